/**
 * HLS playback, the fallback when WebRTC cannot connect. hls.js (vendored, loaded only when
 * needed) sends the token as an Authorization header; where only native HLS exists (older
 * Safari), the token goes in the query, which framecast's auth hook reads (MediaMTX's own JWT
 * mode reads it only with authJWTInHTTPQuery). Either way only the request that opens the
 * HLS session is checked: MediaMTX puts the session in every later URI.
 */

const START_TIMEOUT_MS = 20000; // MediaMTX holds the first playlist until two segments exist

/** HLS failed; `status` is the HTTP status of the failing request (0 when unknown/unreachable). */
export class HlsError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let hlsLoaded = null;

/** Load vendor/hls.min.js once; it is a classic script that defines window.Hls. */
function loadHls() {
  hlsLoaded ??= new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = new URL('./vendor/hls.min.js', import.meta.url).href;
    script.onload = () => resolve(window.Hls);
    script.onerror = () => reject(new HlsError(0, 'could not load hls.js'));
    document.head.append(script);
  });
  return hlsLoaded;
}

function withToken(url, token) {
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.href;
}

/** Resolve when `video` shows its first frame; reject through `fail`, or after a timeout. */
function firstFrame(video, signal, fail) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new HlsError(0, 'no video arrived in time')),
      START_TIMEOUT_MS,
    );
    const settle = (outcome) => (value) => { clearTimeout(timer); outcome(value); };
    video.addEventListener('loadeddata', settle(resolve), { once: true, signal });
    fail(settle(reject));
  });
}

/**
 * Play `url` in `video`. `getToken()` is asked for every request so a refreshed token is used.
 * `onFatal(error)` hears an error that ends playback after it started. Resolves with
 * {hls, stop} (hls is null with native HLS).
 */
export async function startHls(video, url, getToken, onFatal) {
  const Hls = await loadHls().catch(() => null);
  const listeners = new AbortController();
  let started = false;
  if (Hls?.isSupported()) {
    const hls = new Hls({
      lowLatencyMode: true,
      backBufferLength: 10,
      // MediaMTX authenticates only the request that opens an HLS session; every later URI
      // carries the session's secret. A header on those would cost a CORS preflight each.
      xhrSetup: (xhr, requestUrl) => {
        if (!new URL(requestUrl).searchParams.has('session')) {
          xhr.setRequestHeader('Authorization', `Bearer ${getToken()}`);
        }
      },
    });
    const stop = () => { listeners.abort(); hls.destroy(); };
    let rejectStart = () => {};
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return; // hls.js retries the others itself
      const status = data.response?.code ?? data.networkDetails?.status ?? 0;
      let message = data.details;
      if (status) message = `HTTP ${status} (${data.details})`;
      else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) message = `cannot reach ${new URL(url).origin}`;
      const error = new HlsError(status, message);
      stop();
      if (started) onFatal(error);
      else rejectStart(error);
    });
    video.srcObject = null;
    hls.loadSource(url);
    hls.attachMedia(video);
    await firstFrame(video, listeners.signal, (reject) => { rejectStart = reject; })
      .catch((error) => { stop(); throw error; });
    started = true;
    return { hls, stop };
  }
  if (video.canPlayType('application/vnd.apple.mpegurl')) {
    const stop = () => { listeners.abort(); video.removeAttribute('src'); video.load(); };
    let rejectStart = () => {};
    video.addEventListener('error', () => {
      const error = new HlsError(0, 'the browser could not play the HLS stream');
      stop();
      if (started) onFatal(error);
      else rejectStart(error);
    }, { signal: listeners.signal });
    video.srcObject = null;
    video.crossOrigin = 'anonymous'; // keeps the canvas readable for the latency meter
    video.src = withToken(url, getToken());
    await firstFrame(video, listeners.signal, (reject) => { rejectStart = reject; })
      .catch((error) => { stop(); throw error; });
    started = true;
    return { hls: null, stop };
  }
  throw new HlsError(0, 'this browser plays neither HLS nor Media Source Extensions');
}
