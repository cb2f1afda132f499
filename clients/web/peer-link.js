// One neighbour: an RTCPeerConnection and its data channel, set up through the coordinator's
// `signal` relay (the initiator offers; ICE candidates trickle one `signal` each). The link
// only moves frames; what they mean is the owning Resource's business.

import { CHANNEL_LABEL } from './block-protocol.js';

const CONNECT_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 3000;
// Stop queueing into the data channel above this, resume when it drains below the low mark:
// Chromium closes a channel whose send buffer passes 16 MiB.
const SEND_HIGH_WATER = 1024 * 1024;
const SEND_LOW_WATER = 256 * 1024;

export class PeerLink {
  // sendSignal(data): relays data to the neighbour through the coordinator.
  // events: { onOpen(link), onFrame(link, data), onClose(link, reason), onDrain(link) }
  constructor({ peerId, initiator, iceServers, RTCPeerConnectionImpl, sendSignal, events, log }) {
    this.peerId = peerId;
    this.initiator = initiator;
    this.sendSignal = sendSignal;
    this.events = events;
    this.log = log;
    this.channel = null;
    this.open = false;
    this.closed = false;
    this.remoteCandidates = [];  // received before the remote description was set
    this.pc = new RTCPeerConnectionImpl({ iceServers });
    this.pc.onicecandidate = (ev) => {
      // A null candidate marks the end of gathering; the other side needs nothing for it.
      if (!ev.candidate || !ev.candidate.candidate) return;
      const c = ev.candidate;
      this.sendSignal({ type: 'candidate', candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } });
    };
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState;
      if (state === 'failed' || state === 'closed') this.close(`connection ${state}`);
      // A peer that vanished without closing shows as `disconnected` long before `failed`;
      // give it a moment to recover rather than keep sending it requests for half a minute.
      clearTimeout(this.disconnectTimer);
      if (state === 'disconnected') this.disconnectTimer = setTimeout(() => this.close('disconnected'), DISCONNECTED_GRACE_MS);
    };
    this.connectTimer = setTimeout(() => this.close('not connected in time'), CONNECT_TIMEOUT_MS);
    if (initiator) {
      this.attach(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
      this.offer().catch((e) => this.close(`offer failed: ${e.message}`));
    } else {
      this.pc.ondatachannel = (ev) => {
        if (ev.channel.label !== CHANNEL_LABEL || this.channel) { ev.channel.close(); return; }
        this.attach(ev.channel);
      };
    }
  }

  async offer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.sendSignal({ type: 'offer', sdp: this.pc.localDescription.sdp });
  }

  // data: the relayed `signal.data` from this neighbour (untrusted).
  async onSignal(data) {
    if (this.closed || data === null || typeof data !== 'object') return;
    try {
      if (data.type === 'offer' && !this.initiator && typeof data.sdp === 'string') {
        await this.pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
        await this.flushCandidates();
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.sendSignal({ type: 'answer', sdp: this.pc.localDescription.sdp });
      } else if (data.type === 'answer' && this.initiator && typeof data.sdp === 'string') {
        await this.pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
        await this.flushCandidates();
      } else if (data.type === 'candidate' && data.candidate && typeof data.candidate.candidate === 'string') {
        if (this.pc.remoteDescription) await this.pc.addIceCandidate(data.candidate);
        else if (this.remoteCandidates.length < 64) this.remoteCandidates.push(data.candidate);
      }
    } catch (e) {
      this.close(`signaling failed: ${e.message}`);
    }
  }

  async flushCandidates() {
    for (const c of this.remoteCandidates.splice(0)) await this.pc.addIceCandidate(c);
  }

  attach(channel) {
    this.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.bufferedAmountLowThreshold = SEND_LOW_WATER;
    channel.onopen = () => {
      clearTimeout(this.connectTimer);
      this.open = true;
      this.events.onOpen(this);
    };
    channel.onmessage = (ev) => { if (!this.closed) this.events.onFrame(this, ev.data); };
    channel.onclose = () => this.close('data channel closed');
    channel.onbufferedamountlow = () => { if (!this.closed) this.events.onDrain(this); };
  }

  // True when the caller may queue more bytes now; otherwise onDrain tells it when.
  get writable() { return this.open && !this.closed && this.channel.bufferedAmount < SEND_HIGH_WATER; }

  send(frame) {
    if (!this.open || this.closed) return false;
    try {
      this.channel.send(frame);
      return true;
    } catch (e) {
      this.close(`send failed: ${e.message}`);
      return false;
    }
  }

  close(reason) {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    clearTimeout(this.connectTimer);
    clearTimeout(this.disconnectTimer);
    // Handlers go first, so nothing of ours runs on a closing connection; the connection
    // itself is closed on a later turn of the event loop, never from inside one of its own
    // callbacks (where native WebRTC stacks such as @roamhq/wrtc have crashed).
    for (const target of [this.pc, this.channel]) {
      if (!target) continue;
      for (const h of ['onicecandidate', 'onconnectionstatechange', 'ondatachannel', 'onopen', 'onmessage', 'onclose', 'onbufferedamountlow']) target[h] = null;
    }
    const { channel, pc } = this;
    setTimeout(() => {
      try { channel?.close(); } catch { /* already closing */ }
      try { pc.close(); } catch { /* already closed */ }
    }, 0);
    this.events.onClose(this, reason);
  }
}
