// Makes `import ... from 'webrtc-polyfill'` load @roamhq/wrtc instead.
//
// bittorrent-tracker's WebSocket client uses @thaunknown/simple-peer, which takes
// RTCPeerConnection, RTCSessionDescription and RTCIceCandidate from `webrtc-polyfill`
// (it ignores the `wrtc` option). webrtc-polyfill needs node-datachannel's native binary,
// which `npm ci --ignore-scripts` does not build. @roamhq/wrtc ships a prebuilt binary, so a
// resolve hook maps the bare specifier onto ./webrtc-polyfill-shim.mjs, which re-exports
// wrtc's classes under webrtc-polyfill's names.
//
// Import this module before anything that imports bittorrent-tracker, and import
// bittorrent-tracker dynamically afterwards: static imports are resolved when the module
// graph is linked, before this module has run.
import { register } from 'node:module';

export const shimUrl = new URL('./webrtc-polyfill-shim.mjs', import.meta.url).href;

register('./wrtc-hooks.mjs', import.meta.url, { data: { shimUrl } });
