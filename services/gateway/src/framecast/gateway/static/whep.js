/**
 * A small WHEP (WebRTC-HTTP egress) client for MediaMTX: one receive-only peer connection,
 * H.264 preferred, the whole offer sent once ICE gathering ends (MediaMTX accepts trickle too,
 * but a single POST is simpler and fast on a LAN).
 */

const GATHER_TIMEOUT_MS = 2000;

/** WHEP failed; `status` is the HTTP status (0 when the server could not be reached). */
export class WhepError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Put H.264 first (packetization-mode=1 and constrained baseline before the rest) but keep the
 * other codecs, so a server without H.264 can still pick one. Chromium negotiates VP8
 * otherwise, and a forwarding server then has nothing the browser decodes.
 */
function preferH264(transceiver) {
  const capabilities = RTCRtpReceiver.getCapabilities?.('video');
  if (!capabilities || !transceiver.setCodecPreferences) return;
  const rank = (codec) => {
    if (codec.mimeType.toLowerCase() !== 'video/h264') return 3;
    const fmtp = codec.sdpFmtpLine || '';
    if (!fmtp.includes('packetization-mode=1')) return 2;
    return /profile-level-id=42e0/i.test(fmtp) ? 0 : 1;
  };
  const codecs = [...capabilities.codecs].sort((a, b) => rank(a) - rank(b));
  transceiver.setCodecPreferences(codecs);
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, GATHER_TIMEOUT_MS); // send what we have: host candidates come first
  });
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body.error) return body.error; // MediaMTX: {"status":"error","error":"..."}
  } catch {
    // not JSON
  }
  return `HTTP ${response.status}`;
}

/**
 * Open a WHEP session at `url` with a bearer `token`. Resolves with {pc, stream, stop} once the
 * answer is applied; media then arrives on `stream`. `stop()` closes the connection and
 * DELETEs the session resource so MediaMTX frees it at once.
 */
export async function startWhep(url, token) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const stream = new MediaStream();
  pc.addEventListener('track', (event) => stream.addTrack(event.track));
  preferH264(pc.addTransceiver('video', { direction: 'recvonly' }));
  pc.addTransceiver('audio', { direction: 'recvonly' });

  let resource = null;
  const stop = () => {
    pc.close();
    if (resource) {
      fetch(resource, {
        method: 'DELETE',
        headers: { Authorization: `Bearer ${token}` },
        keepalive: true, // still sent when the page is being closed
      }).catch(() => {});
      resource = null;
    }
  };

  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    let response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
        body: pc.localDescription.sdp,
      });
    } catch {
      throw new WhepError(0, `cannot reach ${new URL(url).origin}`);
    }
    if (response.status !== 201) throw new WhepError(response.status, await errorMessage(response));
    const location = response.headers.get('Location');
    if (location) resource = new URL(location, url).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  } catch (error) {
    stop();
    throw error instanceof WhepError ? error : new WhepError(0, error.message);
  }
  return { pc, stream, stop };
}
