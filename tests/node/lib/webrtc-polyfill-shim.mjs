// Stands in for the `webrtc-polyfill` package (see wrtc-loader.mjs): the same named exports,
// backed by @roamhq/wrtc (CommonJS, prebuilt libwebrtc binary).
import wrtc from '@roamhq/wrtc';

export const {
  RTCPeerConnection,
  RTCSessionDescription,
  RTCIceCandidate,
  RTCIceTransport,
  RTCDataChannel,
  RTCSctpTransport,
  RTCDtlsTransport,
  RTCDataChannelEvent,
  RTCPeerConnectionIceEvent,
  RTCPeerConnectionIceErrorEvent,
  RTCRtpReceiver,
  RTCRtpSender,
  RTCRtpTransceiver,
  MediaStream,
  MediaStreamTrack,
} = wrtc;

// webrtc-polyfill's default export is its namespace object; wrtc's module object is the
// closest equivalent.
export default wrtc;
