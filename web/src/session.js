// Session page: live session state (/ws/live?session=ID), "Open shell",
// "End session", and the xterm.js terminal bridged to /ws/relay/viewer.
// Contract: docs/console-api.md.
import { Terminal } from './vendor/xterm/xterm.mjs';
import { FitAddon } from './vendor/xterm/addon-fit.mjs';
import { WebLinksAddon } from './vendor/xterm/addon-web-links.mjs';
import {
  api, cleanText, connectLive, el, fillTimestamps, labelOf, stateBadge, timestamp, untrusted, wsUrl,
} from './common.js';
import { VOCAB } from './strings.js';

const root = document.getElementById('session-page');
const sessionId = root.dataset.sessionId;
const apiBase = `/api/sessions/${encodeURIComponent(sessionId)}`;

const $ = (id) => document.getElementById(id);
const openShellButton = $('open-shell'); // absent for read-only roles
const endSessionButton = $('end-session');
const pageMessage = $('page-message');
const terminalCard = $('terminal-card');
const terminalBox = $('terminal');
const shellStatus = $('shell-status');
const echoIndicator = $('echo-indicator');
const linkPreview = $('link-preview');

// Names from tether/protocol (strings.js): states, close codes, terminal controls.
const SESSION = VOCAB.states.session;
const CONSENT = VOCAB.states.consent;
const CHANNEL = VOCAB.states.channel;
const CLOSE = VOCAB.close;
const CONTROL = VOCAB.terminal.controls;
// The channel kind this page drives: the one the "shell" capability opens.
const SHELL_KIND = VOCAB.capabilities.shell.opens;

// A shell that is being asked for, set up or shown (not detached, not over).
const LIVE_SHELL_STATES = [CHANNEL.REQUESTED, CHANNEL.PAIRING, CHANNEL.OPEN];
const ATTACHABLE_STATES = VOCAB.channelAttachable;
// States a page that reloads follows its shell through.
const FOLLOW_STATES = [CHANNEL.PAIRING, CHANNEL.OPEN, CHANNEL.DETACHED];

const encoder = new TextEncoder();

let session = null; // latest session dict
let initialChecked = false; // on-load re-attach done
let followShell = null; // shell id this page re-attaches to after a reload
let requestedChannelId = null; // channel this page asked for, not yet attached
let requesting = false; // POST /channels in flight
let attaching = null; // channel id whose attach is in flight
let relay = null; // {ws, channelId, closeNote, authed}
let lastChannelId = null; // channel shown in the terminal last

let term = null;
let fitAddon = null;

// ---------------------------------------------------------------- messages

function showPageMessage(text, kind = 'info') {
  if (!text) {
    pageMessage.hidden = true;
    pageMessage.textContent = '';
    return;
  }
  pageMessage.className = `alert alert-${kind}`;
  pageMessage.textContent = text;
  pageMessage.hidden = false;
}

function setShellStatus(text, kind = 'info') {
  shellStatus.textContent = text;
  shellStatus.dataset.kind = kind;
}

/** One line of untrusted text, safe to write into the terminal. */
function oneLine(value) {
  if (value === null || value === undefined) return '';
  return cleanText(String(value).replace(/\s+/g, ' ')).trim();
}

function noteInTerminal(text) {
  if (!term) return;
  term.write(`\r\n\x1b[0m\x1b[1;33m[${oneLine(text)}]\x1b[0m\r\n`);
}

// ------------------------------------------------------------------ links

function openLinkWithConfirm(text) {
  let url;
  try {
    url = new URL(text);
  } catch (err) {
    showPageMessage('Not opening that link: it is not a valid URL.', 'error');
    return;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    showPageMessage('Not opening that link: only http and https links can be opened.', 'error');
    return;
  }
  // url.href is the parsed, normalised form (ASCII: punycode host,
  // percent-encoded path), so what is shown is exactly what opens.
  const ok = window.confirm(
    `The customer's terminal contains a link to:\n\n${url.href}\n\nOpen it in a new tab?`,
  );
  if (ok) window.open(url.href, '_blank', 'noopener,noreferrer');
}

// Show where a link in the terminal points while the pointer is over it.
function linkHover(event, text) {
  linkPreview.textContent = `Link: ${oneLine(text)}`;
  linkPreview.hidden = false;
}

function linkLeave() {
  linkPreview.hidden = true;
  linkPreview.textContent = '';
}

// --------------------------------------------------------------- terminal

let fitScheduled = false;
function scheduleFit() {
  if (fitScheduled || !fitAddon) return;
  fitScheduled = true;
  window.requestAnimationFrame(() => {
    fitScheduled = false;
    if (!terminalCard.hidden) fitAddon.fit(); // fires term.onResize on change
  });
}

function ensureTerminal() {
  terminalCard.hidden = false;
  if (term) return term;
  term = new Terminal({
    cursorBlink: true,
    fontFamily: '"DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, "Liberation Mono", monospace',
    fontSize: 14,
    scrollback: 5000,
    // OSC 8 hyperlinks: ask first. Plain URLs: the web-links addon below.
    linkHandler: {
      activate: (event, text) => openLinkWithConfirm(text),
      hover: linkHover,
      leave: linkLeave,
      allowNonHttpProtocols: false,
    },
    theme: {
      background: '#0f172a',
      foreground: '#e2e8f0',
      cursor: '#e2e8f0',
      selectionBackground: '#334155',
    },
  });
  fitAddon = new FitAddon();
  term.loadAddon(fitAddon);
  term.loadAddon(new WebLinksAddon((event, uri) => openLinkWithConfirm(uri), {
    hover: linkHover,
    leave: linkLeave,
  }));
  term.open(terminalBox);
  fitAddon.fit();

  term.onData((data) => sendBytes(encoder.encode(data)));
  term.onBinary((data) => {
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i += 1) bytes[i] = data.charCodeAt(i) & 0xff;
    sendBytes(bytes);
  });
  term.onResize(() => sendResize());

  new ResizeObserver(scheduleFit).observe(terminalBox);
  window.addEventListener('resize', scheduleFit);
  return term;
}

function sendBytes(bytes) {
  if (relay && relay.authed && relay.ws.readyState === WebSocket.OPEN && bytes.length) {
    relay.ws.send(bytes);
    lastTyped = Date.now();
  }
}

// Typing in the shell counts as console activity: while the technician types, the
// page touches the sign-in once a minute so the 30-minute idle limit does not end
// it mid-work (the 12-hour absolute limit still does; the broker then closes the shell).
let lastTyped = 0;
const KEEPALIVE_MS = 60 * 1000;
setInterval(() => {
  if (Date.now() - lastTyped < KEEPALIVE_MS) {
    fetch(apiBase, { credentials: 'same-origin' })
      .catch(() => {});
  }
}, KEEPALIVE_MS);

/** A terminal dimension within what every side accepts (terminal.clamp in Python). */
function clampSize(value) {
  return Math.max(VOCAB.terminal.minSize, Math.min(value, VOCAB.terminal.maxSize));
}

function sendResize() {
  if (!term || !relay || !relay.authed || relay.ws.readyState !== WebSocket.OPEN) return;
  relay.ws.send(JSON.stringify({
    type: CONTROL.RESIZE, cols: clampSize(term.cols), rows: clampSize(term.rows),
  }));
}

// ------------------------------------------------------------------ relay

async function attach(channelId) {
  if (attaching || relay) return;
  attaching = channelId;
  updateButtons();
  ensureTerminal();
  setShellStatus('Connecting…');
  let secret;
  try {
    const data = await api(`${apiBase}/channels/${encodeURIComponent(channelId)}/attach`, { method: 'POST' });
    secret = data && data.secret;
    if (typeof secret !== 'string' || !secret) throw new Error('the broker sent no viewer secret');
  } catch (err) {
    attaching = null;
    if (requestedChannelId === channelId) requestedChannelId = null;
    setShellStatus(`Could not attach to the shell: ${err.message}`, 'error');
    updateButtons();
    return;
  }
  if (requestedChannelId === channelId) requestedChannelId = null;

  if (lastChannelId !== null && lastChannelId !== channelId) term.reset();
  else if (lastChannelId === channelId) noteInTerminal('Reattaching…');
  lastChannelId = channelId;
  term.options.disableStdin = false;
  term.write('\x1b[?25h');

  const ws = new WebSocket(wsUrl('/ws/relay/viewer'));
  ws.binaryType = 'arraybuffer';
  const current = { ws, channelId, closeNote: null, authed: false };
  relay = current;
  attaching = null;
  updateButtons();

  ws.addEventListener('open', () => {
    if (relay !== current) return;
    ws.send(JSON.stringify({ secret })); // first frame; never in the URL
    current.authed = true;
    sendResize();
    setShellStatus('Connected', 'ok');
    term.focus();
  });

  ws.addEventListener('message', (event) => {
    if (relay !== current) return;
    if (event.data instanceof ArrayBuffer) {
      term.write(new Uint8Array(event.data));
      return;
    }
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === CONTROL.ECHO) {
      echoIndicator.hidden = msg.on !== false;
    } else if (msg.type === CONTROL.EXIT) {
      const code = Number.isInteger(msg.code) ? msg.code : '?';
      current.closeNote = `the shell exited with code ${code}`;
    } else if (msg.type === CONTROL.CLOSED) {
      current.closeNote = oneLine(msg.reason) || 'closed by the broker';
    }
  });

  ws.addEventListener('close', (event) => {
    if (relay !== current) return;
    relay = null;
    echoIndicator.hidden = true;
    const reason = current.closeNote
      || oneLine(event.reason)
      || (VOCAB.viewerCloseText[String(event.code)] ?? '')
      || `connection closed (code ${event.code})`;
    const text = `Shell closed: ${reason}`;
    setShellStatus(text, event.code === CLOSE.NORMAL ? 'closed' : 'error');
    noteInTerminal(text);
    term.write('\x1b[?25l'); // hide the cursor: nothing more can be typed
    term.options.disableStdin = true;
    linkLeave();
    updateButtons();
  });
}

// ------------------------------------------------------------ open / end

function latestShell(s) {
  const channels = (s && Array.isArray(s.channels)) ? s.channels : [];
  const shells = channels.filter((c) => c && c.kind === SHELL_KIND);
  return shells.length ? shells[shells.length - 1] : null;
}

async function openShell() {
  if (!session || requesting || attaching || relay) return;
  const shell = latestShell(session);
  if (shell && shell.state === CHANNEL.DETACHED) {
    attach(shell.id);
    return;
  }
  ensureTerminal();
  fitAddon.fit();
  requesting = true;
  updateButtons();
  showPageMessage('');
  setShellStatus("Waiting for the customer's answer…");
  try {
    const data = await api(`${apiBase}/channels`, {
      method: 'POST',
      body: { kind: SHELL_KIND, cols: clampSize(term.cols), rows: clampSize(term.rows) },
    });
    const channel = data && data.channel;
    if (!channel || typeof channel.id !== 'string') throw new Error('the broker sent no channel');
    requestedChannelId = channel.id;
    // The live update may already have arrived; evaluate with what we know.
    const known = (session.channels || []).find((c) => c && c.id === channel.id);
    checkRequested(known || channel);
  } catch (err) {
    setShellStatus('');
    showPageMessage(`Could not open a shell: ${err.message}`, 'error');
  } finally {
    requesting = false;
    updateButtons();
  }
}

async function endSession() {
  if (!session || session.state === SESSION.ENDED) return;
  if (!window.confirm('End this session? Every channel closes, for the customer too.')) return;
  endSessionButton.disabled = true;
  try {
    const data = await api(`${apiBase}/end`, { method: 'POST' });
    if (data && data.id === sessionId) render(data);
  } catch (err) {
    showPageMessage(`Could not end the session: ${err.message}`, 'error');
  } finally {
    updateButtons();
  }
}

// ---------------------------------------------------------------- render

/** React to the state of the channel this page requested. */
function checkRequested(channel) {
  if (!channel || channel.id !== requestedChannelId) return;
  if (ATTACHABLE_STATES.includes(channel.state)) {
    attach(channel.id);
  } else if (channel.state === CHANNEL.REFUSED || channel.state === CHANNEL.TIMEOUT) {
    requestedChannelId = null;
    const text = channel.state === CHANNEL.TIMEOUT
      ? 'Shell: refused (the customer did not answer in time)'
      : 'Shell: refused by the customer';
    setShellStatus(text, 'error');
    noteInTerminal(text);
  } else if (channel.state === CHANNEL.CLOSED) {
    requestedChannelId = null;
    const reason = oneLine(channel.reason) || 'closed before it opened';
    setShellStatus(`Shell closed: ${reason}`, 'error');
  }
}

function updateButtons() {
  if (!session) return;
  const ended = session.state === SESSION.ENDED;
  if (openShellButton) {
    const shell = latestShell(session);
    const busy = requesting || attaching !== null || relay !== null
      || (shell && LIVE_SHELL_STATES.includes(shell.state));
    openShellButton.disabled = ended || session.consent !== CONSENT.ALLOWED || Boolean(busy);
  }
  if (endSessionButton) endSessionButton.disabled = ended;
}

function renderConsent(node, state, labels, reason) {
  node.className = `consent consent-${cleanText(state)}`;
  let text = labelOf(labels, state);
  const why = oneLine(reason);
  if (why) text += ` (${why})`;
  node.textContent = text;
}

function render(s) {
  session = s;
  $('session-state').replaceChildren(stateBadge(s.state));

  const customer = (s.customer && typeof s.customer === 'object') ? s.customer : {};
  const notShared = s.state === SESSION.ENDED ? 'Not shared' : 'Not shared yet';
  $('f-machine').replaceChildren(untrusted(customer.machine, notShared));
  $('f-os').replaceChildren(untrusted(customer.os, notShared));
  $('f-user').replaceChildren(untrusted(customer.user, notShared));

  const tech = s.technician;
  const techCell = $('f-technician');
  if (tech && typeof tech === 'object') {
    techCell.replaceChildren(tech.display_name || tech.name || '');
    if (tech.org) techCell.append(' ', el('span', { className: 'muted' }, `(${tech.org})`));
  } else {
    techCell.replaceChildren(el('span', { className: 'muted' }, '—'));
  }
  $('f-created').replaceChildren(timestamp(s.created));
  const endedCell = $('f-ended');
  endedCell.replaceChildren(timestamp(s.ended));
  if (s.end_reason) endedCell.append(' ', el('span', { className: 'muted' }, `(${s.end_reason})`));

  renderConsent($('consent-session'), s.consent, VOCAB.consentLabels);
  const shell = latestShell(s);
  const shellNode = $('consent-shell');
  if (shell) renderConsent(shellNode, shell.state, VOCAB.channelLabels, shell.reason);
  else {
    shellNode.className = 'consent consent-none';
    shellNode.textContent = 'not requested';
  }

  if (s.state === SESSION.ENDED) {
    const why = oneLine(s.end_reason);
    showPageMessage(`This session has ended${why ? `: ${why}` : ''}.`, 'info');
  } else if (s.consent === CONSENT.REFUSED || s.consent === CONSENT.TIMEOUT) {
    showPageMessage(s.consent === CONSENT.TIMEOUT
      ? 'Session: refused (the customer did not answer in time).'
      : 'Session: refused by the customer.', 'error');
  } else if (s.state === SESSION.ACTIVE && s.connected === false) {
    showPageMessage('The customer\'s connection dropped; waiting for it to come back…', 'info');
  } else if (s.consent === CONSENT.PENDING) {
    showPageMessage('Waiting for the customer to accept the session…', 'info');
  } else if (pageMessage.classList.contains('alert-info')) {
    showPageMessage('');
  }

  // Channel this page asked for.
  if (requestedChannelId) {
    checkRequested((s.channels || []).find((c) => c && c.id === requestedChannelId));
  }
  // A reload only detaches: re-attach to the shell the page had. The first
  // update may still say "open" (the broker has not yet seen the old page go),
  // so follow that shell and attach as soon as it is pairing or detached.
  if (!initialChecked) {
    initialChecked = true;
    if (shell && FOLLOW_STATES.includes(shell.state)) followShell = shell.id;
  }
  if (followShell && (!shell || shell.id !== followShell || s.state === SESSION.ENDED
      || !FOLLOW_STATES.includes(shell.state))) {
    followShell = null;
  }
  if (followShell && openShellButton && ATTACHABLE_STATES.includes(shell.state)
      && !relay && !attaching) {
    attach(shell.id);
  }
  updateButtons();
}

// ------------------------------------------------------------------ start

fillTimestamps();
if (openShellButton) openShellButton.addEventListener('click', openShell);
if (endSessionButton) endSessionButton.addEventListener('click', endSession);
let liveSeen = false;
connectLive(`/ws/live?session=${encodeURIComponent(sessionId)}`, (s) => {
  if (s && s.id === sessionId) {
    liveSeen = true;
    render(s);
  }
});
// The live socket sends the session once on connect; fetch it as well so the
// page has its state even when that frame is late or never comes (an ended
// session). A live frame always wins over this possibly older answer.
api(apiBase).then((s) => {
  if (!liveSeen && s && s.id === sessionId) render(s);
}).catch((err) => {
  if (!liveSeen) showPageMessage(`Could not load the session: ${err.message}`, 'error');
});
