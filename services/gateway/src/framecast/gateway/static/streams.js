/**
 * The stream list: every stream with its state, source, encoder and output, kept current by the
 * gateway's live events, each linking to its watch page.
 */

import {
  ApiError, captureApiKey, followEvents, listStreams, showApiError,
} from './api.js';

const $ = (id) => document.getElementById(id);
const rows = new Map(); // stream_id -> <tr>

function cell(label, className = '') {
  const td = document.createElement('td');
  td.dataset.label = label; // shown as a heading when the table becomes cards on a phone
  td.className = className;
  return td;
}

function describeSource(stream) {
  const f = stream.format;
  const size = f ? ` ${f.width}×${f.height} @ ${f.fps} fps` : '';
  return `${stream.source?.kind ?? 'unknown'}${size}`;
}

function describeOutput(stats) {
  if (!stats) return '—';
  return `${stats.fps_out.toFixed(1)} fps · ${Math.round(stats.bitrate_kbps)} kbit/s · ${stats.dropped} dropped`;
}

function renderState(td, state, reason) {
  const badge = document.createElement('span');
  badge.className = `state state-${state}`;
  badge.textContent = state;
  td.replaceChildren(badge);
  if (reason) {
    const why = document.createElement('span');
    why.className = 'reason';
    why.textContent = reason;
    td.append(' ', why);
  }
}

function row(stream) {
  const tr = document.createElement('tr');
  const name = document.createElement('th');
  name.scope = 'row';
  const link = document.createElement('a');
  link.href = `watch.html?stream=${encodeURIComponent(stream.stream_id)}`;
  link.textContent = stream.stream_id;
  link.setAttribute('aria-label', `Watch ${stream.stream_id}`);
  name.append(link);
  const state = cell('State', 'state-cell');
  renderState(state, stream.state, stream.reason);
  const source = cell('Source');
  source.textContent = describeSource(stream);
  const encoder = cell('Encoder');
  encoder.textContent = stream.encoder_kind || '—';
  const output = cell('Output', 'output');
  output.textContent = describeOutput(stream.stats);
  const viewers = cell('Viewers');
  viewers.textContent = String(stream.readers ?? 0);
  tr.append(name, state, source, encoder, output, viewers);
  return tr;
}

async function load() {
  const streams = await listStreams();
  rows.clear();
  const body = $('streams').tBodies[0];
  body.replaceChildren(...streams.map((stream) => {
    const tr = row(stream);
    rows.set(stream.stream_id, tr);
    return tr;
  }));
  $('empty').hidden = streams.length > 0;
  $('problem').hidden = true;
}

function onEvent(type, data) {
  const tr = rows.get(data.stream_id);
  if (!tr) {
    if (type === 'transition') load().catch(() => {}); // a new stream: fetch the whole list
    return;
  }
  if (type === 'transition') {
    renderState(tr.querySelector('.state-cell'), data.state, data.reason);
    $('announce').textContent = `${data.stream_id} is ${data.state}`;
  } else if (type === 'stats') {
    tr.querySelector('.output').textContent = describeOutput(data);
  }
}

const showError = (error) => showApiError($('problem'), error);
let missedEvents = false;

function onStatus(status) {
  if (status instanceof ApiError) {
    showError(status);
    $('live').textContent = 'Live updates off';
    return;
  }
  $('live').textContent = status === 'connected' ? 'Live' : 'Reconnecting…';
  if (status === 'connected' && missedEvents) load().catch(showError);
  missedEvents = status !== 'connected';
}

captureApiKey();
load().catch(showError);
followEvents({ onEvent, onStatus });
