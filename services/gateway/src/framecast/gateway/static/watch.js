/**
 * The watch page: play one stream by WebRTC (WHEP), fall back to HLS on its own, reconnect with
 * backoff when playback drops, keep the playback token fresh, and say plainly why nothing plays
 * when nothing can. `?via=hls` or `?via=whep` restricts it to one way.
 */

import {
  ApiError, captureApiKey, followEvents, getStream, requestPlayback, showApiError,
} from './api.js';
import { startHls } from './hls-player.js';
import { LatencyMeter } from './latency.js';
import { PlaybackStats } from './stats.js';
import { startWhep } from './whep.js';

const PLAYABLE = new Set(['publishing', 'live', 'stalled']);
const ENDED = new Set(['stopped', 'failed']);
const WHEP_CONNECT_TIMEOUT_MS = 10000; // MediaMTX's own handshake timeout
const STALL_MS = 6000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const START_HINT = 'Start it with `framecast mediamtx install` and `make demo`.';

captureApiKey();
const query = new URLSearchParams(window.location.search);
const streamId = query.get('stream');
const via = query.get('via');

const $ = (id) => document.getElementById(id);
const video = $('video');
const meter = new LatencyMeter(video);
const stats = new PlaybackStats(video, $('stats'), null);

let record = null; // the stream as the API last described it
let playback = null; // {whep_url, hls_url, token, expires_at, expires_in}
let session = null; // {mode, stop}
let connecting = false;
let attempt = 0;
let retryTimer = null;
let refreshTimer = null;
let stallTimer = null;

function notice(text) {
  $('notice').textContent = text;
}

function clearProblem() {
  $('problem').hidden = true;
  $('problem').replaceChildren();
}

/** Show a headline, optional detail lines, and a "Retry now" button when a retry is pending. */
function problem(headline, details = [], retryInMs = null) {
  const box = $('problem');
  const title = document.createElement('p');
  title.className = 'headline';
  title.textContent = headline;
  box.replaceChildren(title);
  if (details.length) {
    const list = document.createElement('ul');
    for (const line of details) list.append(Object.assign(document.createElement('li'), { textContent: line }));
    box.append(list);
  }
  if (retryInMs !== null) {
    const retry = document.createElement('p');
    retry.textContent = `Trying again in ${Math.round(retryInMs / 1000)} s. `;
    const button = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Retry now' });
    button.addEventListener('click', () => { attempt = 0; connect(); });
    retry.append(button);
    box.append(retry);
  }
  box.hidden = false;
}

function stateText(stream) {
  return stream.reason ? `${stream.state}: ${stream.reason}` : stream.state;
}

/** "cam1 failed: <reason>" or "cam1 stopped: <reason>": why a stream has ended. */
function endedText() {
  return `${streamId} ${stateText(record)}`;
}

function renderRecord() {
  const state = $('state');
  state.textContent = record.state;
  state.className = `state state-${record.state}`;
  state.title = record.reason || '';
  stats.meter = record.source?.kind === 'testpattern' ? meter : null;
}

function scheduleRetry() {
  clearTimeout(retryTimer);
  const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
  attempt += 1;
  const delay = base * (0.8 + Math.random() * 0.4); // jitter: viewers do not return in step
  retryTimer = setTimeout(connect, delay);
  return delay;
}

/** The token expires; fetch a new one well before, for requests made after that (HLS, reconnects).
 *  Counted from `expires_in`, not `expires_at`: this computer's clock may not agree with the server's. */
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const remaining = playback.expires_in * 1000;
  refreshTimer = setTimeout(async () => {
    try {
      playback = await requestPlayback(streamId);
      scheduleRefresh();
    } catch {
      refreshTimer = setTimeout(scheduleRefresh, 10000);
    }
  }, Math.max(5000, remaining * 0.75));
}

function teardown() {
  clearTimeout(refreshTimer);
  clearInterval(stallTimer);
  session?.stop();
  session = null;
}

/** Playback stopped on its own: tear down and come back with backoff. */
function dropped(reason) {
  if (!session) return;
  teardown();
  const delay = scheduleRetry();
  problem(`Playback stopped (${reason}).`, [], delay);
}

/** Treat a picture that stops moving as a drop: neither WebRTC nor HLS always says so. */
function watchForStalls() {
  let frames = -1;
  let still = 0;
  stallTimer = setInterval(() => {
    if (document.hidden) { // browsers may pause a muted video in a background tab
      still = 0;
      return;
    }
    const now = video.getVideoPlaybackQuality?.().totalVideoFrames ?? video.currentTime;
    still = now === frames ? still + 1000 : 0;
    frames = now;
    if (still >= STALL_MS) dropped(`no new video for ${STALL_MS / 1000} s`);
  }, 1000);
}

/** Resolve on the first frame; reject when ICE/DTLS fails or nothing arrives in time. */
function whepConnected(pc) {
  const listeners = new AbortController();
  const { signal } = listeners;
  return new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error('no video arrived in time')), WHEP_CONNECT_TIMEOUT_MS);
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'failed') reject(new Error('the WebRTC connection failed (ICE/DTLS)'));
    }, { signal });
    video.addEventListener('loadeddata', resolve, { signal });
  }).finally(() => listeners.abort());
}

async function playWhep() {
  const whep = await startWhep(playback.whep_url, playback.token);
  const stop = () => { stats.unfollow(); whep.stop(); video.srcObject = null; };
  try {
    video.srcObject = whep.stream;
    await whepConnected(whep.pc);
  } catch (error) {
    stop();
    throw error;
  }
  whep.pc.addEventListener('connectionstatechange', () => {
    if (['failed', 'closed'].includes(whep.pc.connectionState)) dropped('WebRTC connection lost');
  });
  stats.follow('whep', { pc: whep.pc });
  return { mode: 'whep', stop };
}

async function playHls() {
  const hls = await startHls(video, playback.hls_url, () => playback.token, (error) => dropped(`HLS: ${error.message}`));
  stats.follow('hls', { hls: hls.hls });
  return { mode: 'hls', stop: () => { stats.unfollow(); hls.stop(); } };
}

/** Why nothing plays, in the words a person starting the system needs. */
function explain(failures) {
  const details = failures.map(([way, error]) => `${way}: ${error.message}`);
  const statuses = failures.map(([, error]) => error.status ?? 0);
  details.push(`Stream state: ${stateText(record)}`);
  let headline = `${streamId} cannot be played right now.`;
  const unreachable = failures.some(([, e]) => e.message.startsWith('cannot reach'));
  if (unreachable && statuses.every((s) => s === 0)) {
    headline = `MediaMTX is not running or cannot be reached. ${START_HINT}`;
  } else if (statuses.some((s) => s === 401 || s === 403)) {
    headline = 'MediaMTX refused the playback token: is the auth service running, and is MediaMTX\'s auth hook pointing at it?';
  } else if (statuses.some((s) => s === 404)) {
    headline = `MediaMTX has no video for ${streamId} yet.`;
  }
  problem(headline, details, scheduleRetry());
}

async function connect() {
  if (connecting || session) return;
  connecting = true;
  clearTimeout(retryTimer);
  try {
    record = await getStream(streamId);
    renderRecord();
    if (ENDED.has(record.state)) {
      problem(endedText());
      return;
    }
    if (!PLAYABLE.has(record.state)) {
      clearProblem();
      notice(`${streamId} is ${record.state}; the video starts when it goes live.`);
      return; // a transition event brings us back
    }
    notice(`Connecting to ${streamId}…`);
    const began = performance.now(); // the viewer's wait: token, negotiation, first keyframe
    playback = await requestPlayback(streamId);
    const failures = [];
    const ways = [['whep', 'WebRTC', playWhep], ['hls', 'HLS', playHls]];
    for (const [, way, play] of ways.filter(([k]) => !via || via === k)) {
      if (session) break;
      try {
        session = await play();
      } catch (error) {
        failures.push([way, error]);
      }
    }
    if (!session) {
      notice('');
      explain(failures);
      return;
    }
    if (ENDED.has(record.state)) { // it ended while we were connecting
      teardown();
      return;
    }
    stats.started(performance.now() - began);
    attempt = 0;
    clearProblem();
    notice(failures.length ? `Playing by ${session.mode === 'hls' ? 'HLS' : 'WebRTC'} (WebRTC failed: ${failures[0][1].message}).` : '');
    scheduleRefresh();
    watchForStalls();
  } catch (error) {
    notice('');
    if (error.status === 401 || error.status === 404) showApiError($('problem'), error);
    else problem(error.message, [], scheduleRetry());
  } finally {
    connecting = false;
  }
}

function onTransition(event) {
  if (event.stream_id !== streamId || !record) return;
  record = { ...record, state: event.state, reason: event.reason ?? '' };
  renderRecord();
  if (ENDED.has(event.state)) {
    teardown();
    clearTimeout(retryTimer);
    notice('');
    problem(endedText());
  } else if (PLAYABLE.has(event.state) && !session) {
    attempt = 0;
    connect();
  } else if (!session) {
    clearProblem();
    notice(`${streamId} is ${event.state}; the video starts when it goes live.`);
  }
}

function main() {
  $('toggle-stats').addEventListener('click', (event) => {
    const pressed = event.currentTarget.getAttribute('aria-pressed') !== 'true';
    event.currentTarget.setAttribute('aria-pressed', String(pressed));
    $('stats').hidden = !pressed;
  });
  if (!streamId) {
    problem('No stream chosen: pick one from the list of streams.');
    return;
  }
  document.title = `${streamId} · framecast`;
  $('title').textContent = streamId;
  window.addEventListener('pagehide', teardown);
  window.addEventListener('pageshow', (event) => { if (event.persisted) connect(); });
  followEvents({
    stream: streamId,
    onEvent: (type, data) => { if (type === 'transition') onTransition(data); },
    onStatus: (status) => { if (status instanceof ApiError) showApiError($('problem'), status); },
  });
  connect();
}

main();
