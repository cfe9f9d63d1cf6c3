// The session record page: plays a channel's recording in the sandboxed frame.
//
// Recordings are bytes the customer's machine produced. This page fetches one
// (same origin, with the sign-in cookie; the broker audits it as a "play") and
// hands the text to the player frame (/audit/player, sandbox="allow-scripts",
// so an opaque origin without cookies, API or access to this page). The frame's
// origin is "null", so postMessage needs "*" as the target; that is why a
// recording is sent only to a frame this page has just (re)loaded, only once,
// and nothing but the recording and its markers is ever sent. Everything the
// frame says back is untrusted data: checked, and shown through textContent.

import { cleanText, el } from './common.js';

const READY_TIMEOUT_MS = 15000;
const MAX_MARKERS = 2000;
const MAX_LABEL = 200;
// What each state report from the frame means for the page.
const STATES = { play: 'playing', playing: 'playing', pause: 'paused', ended: 'ended', seeked: null, tick: null };

const frame = document.getElementById('player-frame');
const area = document.getElementById('player-area');
const speedSelect = document.getElementById('player-speed');
const markerList = document.getElementById('player-markers');
const markersEmpty = document.getElementById('player-markers-empty');
const statusLine = document.getElementById('player-status');
const errorBox = document.getElementById('player-error');
const nowPlaying = document.getElementById('player-title');
const toggle = document.getElementById('player-toggle');
const playButtons = [...document.querySelectorAll('.play-recording[data-channel]')];

const page = readPageData();

// "loading": the frame is starting; "ready": it said so and has not been given
// a recording yet; "used": it has one (a new recording reloads the frame first).
let frameState = 'loading';
let waitingForReady = null; // resolve() of the pending wait, if any
let current = null; // {channel, markers: [[t, label]]}
let duration = 0;
let playerState = 'paused'; // playing | paused | ended
let jumpedTo = null; // index of the marker last clicked, until playing moves on

function readPageData() {
  const node = document.getElementById('recordings-data');
  try {
    const data = JSON.parse(node ? node.textContent : '{}');
    return { session: String(data.session || ''), recordings: Array.isArray(data.recordings) ? data.recordings : [] };
  } catch (err) {
    return { session: '', recordings: [] };
  }
}

/** 75.5 -> "1:15" (or "1:15.5" with tenths), 3725 -> "1:02:05". */
function clock(seconds, tenths = false) {
  const total = Math.max(0, Number(seconds) || 0);
  const s = Math.floor(tenths ? Math.round(total * 10) / 10 : total);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  let ss = String(s % 60).padStart(2, '0');
  if (tenths) ss += `.${Math.round(total * 10) % 10}`;
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Tenths of a second matter in short recordings, not in long ones. */
function fine(longest) {
  return longest < 600;
}

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

function setStatus(text) {
  statusLine.textContent = text;
}

function setBusy(busy) {
  area.setAttribute('aria-busy', busy ? 'true' : 'false');
  for (const b of playButtons) b.disabled = busy;
}

/** Show what the player last reported; the page's Play/Pause button follows it. */
function showState(t) {
  area.dataset.state = playerState;
  toggle.textContent = playerState === 'playing' ? 'Pause' : 'Play';
  const word = { playing: 'Playing', paused: 'Paused', ended: 'Ended' }[playerState];
  const tenths = fine(duration);
  setStatus(`${word} at ${clock(t, tenths)}${duration ? ` of ${clock(duration, tenths)}` : ''}`);
  highlightMarker(t);
}

// ------------------------------------------------------------------ markers

/** The `m` events of an asciicast v2 text: [[seconds, label], ...]. */
function castMarkers(cast) {
  const found = [];
  // Only lines holding the string "m" are parsed (inside JSON text a quote is
  // escaped, so output cannot contain it): one pass over the text.
  let i = cast.indexOf('"m"');
  while (i !== -1 && found.length < MAX_MARKERS) {
    const start = cast.lastIndexOf('\n', i) + 1;
    let end = cast.indexOf('\n', i);
    if (end < 0) end = cast.length;
    if (start > 0) { // not the header line
      try {
        const e = JSON.parse(cast.slice(start, end));
        if (Array.isArray(e) && e[1] === 'm' && Number.isFinite(e[0]) && e[0] >= 0) {
          found.push([e[0], typeof e[2] === 'string' ? e[2] : '']);
        }
      } catch (err) {
        // not a JSON line: the player reports a broken recording itself
      }
    }
    i = cast.indexOf('"m"', end);
  }
  return found;
}

/** Markers from the audit log (page data) and from the recording, sorted, de-duplicated. */
function mergeMarkers(fromPage, fromCast) {
  const all = [];
  for (const m of [...(Array.isArray(fromPage) ? fromPage : []), ...fromCast]) {
    if (!Array.isArray(m)) continue;
    const t = Number(m[0]);
    if (!Number.isFinite(t) || t < 0) continue;
    const label = cleanText(m[1]).slice(0, MAX_LABEL) || 'marker';
    // The same moment may be both in the log and in the recording.
    if (all.some(([u, l]) => l === label && Math.abs(u - t) < 1)) continue;
    all.push([Math.round(t * 1000) / 1000, label]);
  }
  all.sort((a, b) => a[0] - b[0]);
  return all.slice(0, MAX_MARKERS);
}

function renderMarkers(markers) {
  markerList.textContent = '';
  const tenths = fine(markers.length ? markers[markers.length - 1][0] : 0);
  markers.forEach(([t, label], index) => {
    const button = el('button', {
      type: 'button', className: 'marker-jump', 'data-t': String(t), 'data-index': String(index),
      'aria-label': `Jump to ${clock(t, tenths)} ${label}`,
    }, el('span', { className: 'marker-time mono' }, clock(t, tenths)), el('span', { className: 'marker-label' }, label));
    button.addEventListener('click', () => {
      jumpedTo = index;
      post({ type: 'seek', t });
    });
    markerList.append(el('li', {}, button));
  });
  markersEmpty.hidden = markers.length > 0;
}

/** Mark the marker just jumped to, else the last one at or before `t`, as current. */
function highlightMarker(t) {
  let last = null;
  for (const button of markerList.querySelectorAll('button[data-t]')) {
    button.removeAttribute('aria-current');
    if (jumpedTo !== null ? Number(button.dataset.index) === jumpedTo : Number(button.dataset.t) <= t + 0.05) {
      last = button;
    }
  }
  if (last) last.setAttribute('aria-current', 'true');
}

// -------------------------------------------------------------- the frame

function post(message) {
  // Only to a frame that holds the current recording; see the top comment.
  if (frameState === 'used' && current) frame.contentWindow.postMessage(message, '*');
}

function waitForReady() {
  return new Promise((resolve, reject) => {
    const timer = window.setTimeout(() => {
      waitingForReady = null;
      reject(new Error('The player did not start. Reload the page and try again.'));
    }, READY_TIMEOUT_MS);
    waitingForReady = () => {
      window.clearTimeout(timer);
      waitingForReady = null;
      resolve();
    };
  });
}

/** A frame that has just loaded and holds nothing yet. */
async function freshFrame() {
  if (frameState === 'ready') return;
  const ready = waitForReady();
  if (frameState === 'used') {
    frameState = 'loading';
    frame.setAttribute('src', '/audit/player'); // a new document, nothing of the last recording
  }
  await ready;
}

function onMessage(event) {
  // Only our player frame; its messages are data, never trusted.
  if (event.source !== frame.contentWindow || event.origin !== 'null') return; // opaque origin
  const msg = event.data;
  if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
  switch (msg.type) {
    case 'ready':
      if (frameState === 'loading') {
        frameState = 'ready';
        if (waitingForReady) waitingForReady();
      }
      break;
    case 'loaded':
      if (!current) return;
      duration = Number.isFinite(msg.duration) && msg.duration > 0 ? msg.duration : 0;
      setBusy(false);
      toggle.disabled = false;
      playerState = 'paused';
      showState(Number.isFinite(msg.time) && msg.time >= 0 ? msg.time : 0);
      break;
    case 'state': {
      if (!current || !Object.hasOwn(STATES, msg.state)) return;
      const t = Number.isFinite(msg.time) && msg.time >= 0 ? msg.time : 0;
      // "seeked" and "tick" keep playing or paused; after the end, a seek leaves it paused.
      playerState = STATES[msg.state] || (playerState === 'ended' ? 'paused' : playerState);
      if (msg.state !== 'seeked' && msg.state !== 'pause') jumpedTo = null;
      showState(t);
      break;
    }
    case 'error':
      setBusy(false);
      showError(`The player could not play this recording: ${cleanText(msg.message).slice(0, 300)}`);
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------- fetching

const HTTP_MESSAGES = {
  401: 'Your sign-in has expired. Reload the page to sign in again.',
  403: 'You may not play this recording.',
  404: 'This recording is not available: it was removed or never finished.',
  503: 'The broker cannot play recordings right now: the audit log could not record this access. Try again later.',
};

/** The recording's text; `onProgress(received, total)` while it arrives. */
async function fetchRecording(channel, expected, onProgress) {
  const path = `/api/audit/sessions/${encodeURIComponent(page.session)}/recordings/${encodeURIComponent(channel)}`;
  let response;
  try {
    response = await fetch(path, { credentials: 'same-origin', cache: 'no-store', referrerPolicy: 'same-origin' });
  } catch (err) {
    throw new Error('The broker could not be reached.');
  }
  if (!response.ok) {
    let detail = '';
    try {
      const body = await response.json();
      if (body && typeof body.error === 'string') detail = cleanText(body.error).slice(0, 200);
    } catch (err) {
      detail = '';
    }
    const known = HTTP_MESSAGES[response.status];
    throw new Error(known || `The recording could not be loaded (HTTP ${response.status}${detail ? `: ${detail}` : ''}).`);
  }
  const total = Number(response.headers.get('Content-Length')) || expected;
  if (!response.body) return response.text();
  const reader = response.body.getReader();
  const decoder = new TextDecoder('utf-8');
  const parts = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    received += value.byteLength;
    parts.push(decoder.decode(value, { stream: true }));
    onProgress(received, total);
  }
  parts.push(decoder.decode());
  return parts.join('');
}

async function play(button) {
  const channel = button.dataset.channel;
  const rec = page.recordings.find((r) => r && r.channel === channel);
  if (!rec) return;
  errorBox.hidden = true;
  errorBox.textContent = '';
  setBusy(true);
  area.hidden = false;
  area.dataset.state = 'loading';
  current = null;
  duration = 0;
  toggle.disabled = true;
  jumpedTo = null;
  renderMarkers([]);
  markersEmpty.hidden = true;
  nowPlaying.textContent = `Channel ${cleanText(channel)}`;
  const size = Number(rec.bytes) || 0;
  setStatus(`Loading the recording${size ? ` (${megabytes(size)})` : ''}…`);
  try {
    const [cast] = await Promise.all([
      fetchRecording(channel, size, (received, total) => {
        const pct = total ? ` ${Math.min(100, Math.floor((received / total) * 100))}%` : '';
        setStatus(`Loading the recording…${pct}`);
      }),
      freshFrame(),
    ]);
    const markers = mergeMarkers(rec.markers, castMarkers(cast));
    current = { channel, markers };
    renderMarkers(markers);
    setStatus('Starting the player…');
    frameState = 'used';
    frame.contentWindow.postMessage({ type: 'load', cast, markers, speed: Number(speedSelect.value) || 1 }, '*');
    area.scrollIntoView({ block: 'nearest' });
  } catch (err) {
    setBusy(false);
    area.dataset.state = 'error';
    area.hidden = true; // nothing to show but the alert
    setStatus('');
    showError(err && err.message ? err.message : String(err));
  }
}

function start() {
  window.addEventListener('message', onMessage);
  // The frame says "ready" when its script starts, which may have happened
  // before this module ran; asking again (a message without any data) covers that.
  frame.contentWindow.postMessage({ type: 'ping' }, '*');
  for (const button of playButtons) {
    button.addEventListener('click', () => {
      play(button);
    });
  }
  toggle.addEventListener('click', () => {
    post({ type: playerState === 'playing' ? 'pause' : 'play' });
  });
  speedSelect.addEventListener('change', () => {
    post({ type: 'speed', speed: Number(speedSelect.value) });
  });
}

// A session without recordings has no player on its page.
if (frame && area) start();
