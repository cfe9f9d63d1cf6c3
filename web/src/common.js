// Shared helpers for the Tether console pages (plain ES module, no bundler).
//
// Every string that comes from the customer's machine is untrusted: it only
// ever reaches the page through textContent (never innerHTML), after
// cleanText() has replaced control and bidirectional-override characters
// (the class Python's clean_text removes: VOCAB.controlChars).

// Labels, close codes and the control-character class come from strings.js,
// generated from tether/protocol/vocabulary.py at build time (never copied here).
import { CONTROL_CHARS, VOCAB } from './strings.js';

const CLOSE = VOCAB.close;

/** Replace control, line-separator, bidi-override and invisible characters with U+FFFD. */
export function cleanText(value) {
  if (value === null || value === undefined) return '';
  return String(value).replace(CONTROL_CHARS, '\ufffd');
}

/**
 * Create an element. `attrs` values are set with setAttribute (never
 * innerHTML); children are nodes or strings (added as text nodes).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'className') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An untrusted customer string, isolated (<bdi>) and cleaned; `empty` if missing. */
export function untrusted(value, empty = '—') {
  if (value === null || value === undefined || value === '') {
    return el('span', { className: 'muted' }, empty);
  }
  return el('bdi', { className: 'untrusted' }, cleanText(value));
}

/** The label of `key` in a VOCAB label table, or the key itself, cleaned. */
export function labelOf(table, key) {
  return Object.hasOwn(table, key) ? table[key] : cleanText(key);
}

export function stateBadge(state) {
  return el('span', { className: `badge badge-${cleanText(state)}` }, labelOf(VOCAB.sessionLabels, state));
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** <time> for a float epoch-seconds timestamp, or a muted dash. */
export function timestamp(ts) {
  if (ts === null || ts === undefined) return el('span', { className: 'muted' }, '—');
  const node = el('time', { className: 'ts', 'data-ts': String(ts) });
  fillTimestamp(node);
  return node;
}

function fillTimestamp(node) {
  const ts = Number(node.dataset.ts);
  if (!Number.isFinite(ts)) return;
  const date = new Date(ts * 1000);
  node.dateTime = date.toISOString();
  node.textContent = timeFormat.format(date);
  node.title = date.toISOString();
}

/** Format every server-rendered <time data-ts> under `root`. */
export function fillTimestamps(root = document) {
  for (const node of root.querySelectorAll('time[data-ts]')) fillTimestamp(node);
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : '';
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Same-origin JSON call; state-changing methods carry X-CSRF-Token. */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      // Not "no-referrer": that makes the browser send "Origin: null".
      referrerPolicy: 'same-origin',
    });
  } catch (err) {
    throw new ApiError(0, 'the broker could not be reached');
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.error === 'string'
      ? data.error
      : `request failed (HTTP ${response.status})`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/** ws:// or wss:// URL for a path on this origin. */
export function wsUrl(path) {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${window.location.host}${path}`;
}

/**
 * Keep a /ws/live connection open and call onSession(sessionDict) for every
 * {"type": "session"} frame. Reconnects with capped exponential backoff, at
 * most MAX_ATTEMPTS times in a row; onStatus(text, kind) reports the state
 * ("", "connecting", "error").
 */
export function connectLive(path, onSession, onStatus = () => {}) {
  const MAX_ATTEMPTS = 12;
  let attempts = 0;
  let stopped = false;
  let socket = null;
  let timer = null;

  function open() {
    if (stopped) return;
    socket = new WebSocket(wsUrl(path));
    socket.addEventListener('open', () => {
      attempts = 0;
      onStatus('Live', 'ok');
    });
    socket.addEventListener('message', (event) => {
      if (typeof event.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (msg && msg.type === 'session' && msg.session && typeof msg.session === 'object') {
        onSession(msg.session);
      }
    });
    socket.addEventListener('close', (event) => {
      socket = null;
      if (stopped) return;
      if (event.code === CLOSE.AUTH || event.code === CLOSE.FORBIDDEN) {
        onStatus('Signed out — reload the page to sign in again', 'error');
        return;
      }
      attempts += 1;
      if (attempts > MAX_ATTEMPTS) {
        onStatus('Live updates stopped — reload the page', 'error');
        return;
      }
      const delay = Math.min(30000, 1000 * 2 ** (attempts - 1));
      onStatus('Reconnecting…', 'connecting');
      timer = window.setTimeout(open, delay);
    });
  }

  // Leaving the page closes the socket cleanly; if the browser later restores
  // the page from its back/forward cache, reload it to get fresh state.
  window.addEventListener('pagehide', () => {
    stopped = true;
    if (timer !== null) window.clearTimeout(timer);
    if (socket) socket.close(CLOSE.NORMAL);
  });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) window.location.reload();
  });

  open();
  return {
    close() {
      stopped = true;
      if (timer !== null) window.clearTimeout(timer);
      if (socket) socket.close(CLOSE.NORMAL);
    },
  };
}
