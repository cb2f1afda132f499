// Module customization hooks (runs on the loader thread), registered by wrtc-loader.mjs.
let shimUrl;

export function initialize(data) {
  shimUrl = data.shimUrl;
}

export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'webrtc-polyfill') return { url: shimUrl, format: 'module', shortCircuit: true };
  return nextResolve(specifier, context);
}
