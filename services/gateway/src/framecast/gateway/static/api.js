/**
 * The gateway's HTTP API as the pages use it: the API key, problem-details errors, and live
 * events. Events are read with fetch rather than EventSource because EventSource cannot send
 * the Authorization header a dev-mode gateway asks for.
 */

const KEY_STORAGE = 'framecast.apiKey';
const EVENTS_RETRY_MS = [1000, 2000, 5000, 10000];

/** An API answer other than 2xx, with the problem-details fields the gateway sends. */
export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
  }
}

/**
 * Take an API key given as `?key=` or `#key=` into sessionStorage, and drop it from the address
 * bar so it is not bookmarked, shared or shown. Call once when a page loads.
 */
export function captureApiKey() {
  const url = new URL(window.location.href);
  const hash = new URLSearchParams(url.hash.slice(1));
  const key = url.searchParams.get('key') || hash.get('key');
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  url.searchParams.delete('key');
  hash.delete('key');
  url.hash = hash.toString();
  window.history.replaceState(null, '', url);
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function toApiError(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not problem details (a proxy's page, say): the status alone will have to do
  }
  if (response.status === 401) {
    const hint = sessionStorage.getItem(KEY_STORAGE)
      ? 'The API key was refused.'
      : 'This gateway needs an API key.';
    return new ApiError(401, 'Unauthorized', `${hint} Open the page with ?key=YOUR_KEY, or enter it below.`);
  }
  return new ApiError(response.status, body.title, body.detail);
}

async function request(method, path) {
  let response;
  try {
    response = await fetch(path, { method, headers: { Accept: 'application/json', ...authHeaders() } });
  } catch {
    throw new ApiError(0, 'Unreachable', 'The framecast gateway cannot be reached. Is it running?');
  }
  if (!response.ok) throw await toApiError(response);
  return response.json();
}

export const listStreams = () => request('GET', '/api/streams');
export const getStream = (id) => request('GET', `/api/streams/${encodeURIComponent(id)}`);
export const requestPlayback = (id) =>
  request('POST', `/api/streams/${encodeURIComponent(id)}/playback`);

/** Yield {event, data, id} for each event of a text/event-stream body. */
async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { event: 'message', data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === '') {
        if (event.data.length) yield { ...event, data: event.data.join('\n') };
        event = { event: 'message', data: [], id: event.id };
        continue;
      }
      const colon = line.indexOf(':');
      if (colon === 0) continue; // a comment (keep-alive)
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event.event = text;
      else if (field === 'data') event.data.push(text);
      else if (field === 'id') event.id = text;
    }
  }
}

/**
 * Follow GET /api/events (all streams, or `stream` only) and call `onEvent(type, data)` for each
 * JSON event. Reconnects with backoff, resuming with Last-Event-ID; `onStatus` hears
 * 'connected', 'reconnecting' or an ApiError that ends it (a refused API key). Returns stop().
 */
export function followEvents({ stream, onEvent, onStatus = () => {} }) {
  const abort = new AbortController();
  const path = stream ? `/api/events?stream=${encodeURIComponent(stream)}` : '/api/events';
  let lastId = null;
  let failures = 0;

  const run = async () => {
    while (!abort.signal.aborted) {
      try {
        const headers = { Accept: 'text/event-stream', ...authHeaders() };
        if (lastId !== null) headers['Last-Event-ID'] = lastId;
        const response = await fetch(path, { headers, signal: abort.signal });
        if (response.status === 401) {
          onStatus(await toApiError(response));
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        failures = 0;
        onStatus('connected');
        for await (const message of readEvents(response.body)) {
          lastId = message.id ?? lastId;
          onEvent(message.event, JSON.parse(message.data));
        }
      } catch {
        if (abort.signal.aborted) return;
      }
      onStatus('reconnecting');
      const delay = EVENTS_RETRY_MS[Math.min(failures, EVENTS_RETRY_MS.length - 1)];
      failures += 1;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  };
  run();
  return () => abort.abort();
}

/** Show `error` in `box`; for a 401 add a field to type the API key in. */
export function showApiError(box, error) {
  box.replaceChildren();
  const text = document.createElement('p');
  text.textContent = error.message;
  box.append(text);
  if (error.status === 401) {
    const form = document.createElement('form');
    form.className = 'key-form';
    form.innerHTML = `<label for="api-key">API key</label>
      <input id="api-key" name="key" type="password" autocomplete="off" required>
      <button type="submit">Use key</button>`;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      setApiKey(form.elements.key.value.trim());
      window.location.reload();
    });
    box.append(form);
  }
  box.hidden = false;
}
