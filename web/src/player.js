// The recording player, inside a sandboxed frame (classic script, no module).
//
// The frame is embedded with `sandbox="allow-scripts"` and served with the CSP
// directive `sandbox allow-scripts` (so even opened on its own), without
// `allow-same-origin`: its origin is opaque: it has no cookies, cannot
// call the broker's API and cannot touch the console page's DOM. Recordings
// are bytes the customer's machine produced; whatever the terminal emulator
// makes of them stays in here. The console page (our parent, and only our
// parent) hands us the recording by postMessage:
//
//   parent -> frame  {type: "ping"}                       answered by "ready" until loaded
//                    {type: "load", cast: "<asciicast v2 text>", markers: [[t, label]], speed}
//                    {type: "seek", t} | {type: "seek", marker: index}
//                    {type: "speed", speed} | {type: "play"} | {type: "pause"}
//   frame -> parent  {type: "ready"}                      this script runs, send "load"
//                    {type: "loaded", duration, speed, time}  the recording is parsed and shown
//                    {type: "state", state, time}         play(ing) / pause / ended / seeked / tick
//                    {type: "error", message}             the recording could not be played
//
// Nothing here trusts the message contents either: types and ranges are checked.
// The broker bounds the recording's output before the page gets it, as it does for
// the live view (tether/protocol/vt.py): no sequence makes the emulator allocate or
// loop without bound (downloads stay raw).
(function () {
  'use strict';

  const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16];
  const MAX_MARKERS = 10000;
  const MAX_LABEL = 200;
  const root = document.getElementById('player');
  // The console page has the same origin as this frame's URL; our own origin
  // is "null". Replies go to that origin only, never "*".
  const PARENT_ORIGIN = window.location.origin;

  let player = null;
  let source = null; // {cast, markers} of the recording being played
  let speed = 1;
  let generation = 0; // bumped whenever the player is replaced
  let playing = false; // what the player last said, so a speed change keeps it

  function post(message) {
    if (window.parent !== window) window.parent.postMessage(message, PARENT_ORIGIN);
  }

  function fail(err) {
    const text = err && err.message ? String(err.message) : String(err);
    post({ type: 'error', message: text.slice(0, 300) });
  }

  function validMarkers(value) {
    if (!Array.isArray(value)) return [];
    const out = [];
    for (const m of value.slice(0, MAX_MARKERS)) {
      if (!Array.isArray(m) || m.length !== 2) continue;
      const t = Number(m[0]);
      if (!Number.isFinite(t) || t < 0) continue;
      out.push([t, String(m[1]).slice(0, MAX_LABEL)]);
    }
    out.sort((a, b) => a[0] - b[0]);
    return out;
  }

  function validSpeed(value) {
    const s = Number(value);
    return SPEEDS.includes(s) ? s : null;
  }

  function currentTime() {
    try {
      return player ? player.getCurrentTime() || 0 : 0;
    } catch (err) {
      return 0;
    }
  }

  // While playing, the page hears the time every second (its status line and
  // current marker follow it).
  let ticker = null;

  function setPlaying(value) {
    playing = value;
    if (playing && ticker === null) {
      ticker = window.setInterval(() => post({ type: 'state', state: 'tick', time: currentTime() }), 1000);
    } else if (!playing && ticker !== null) {
      window.clearInterval(ticker);
      ticker = null;
    }
  }

  function state(name) {
    if (name === 'play' || name === 'playing') setPlaying(true);
    else if (name === 'pause' || name === 'ended') setPlaying(false);
    post({ type: 'state', state: name, time: currentTime() });
  }

  /** Replace the player; start at `at` seconds, playing or not. */
  async function create(at, play) {
    const mine = ++generation;
    setPlaying(false); // the old player is going; the new one reports its own state
    if (player) {
      player.dispose();
      player = null;
    }
    root.textContent = '';
    const p = AsciinemaPlayer.create({ data: source.cast }, root, {
      // The page's markers (consent, channel open/close, chat) merged with the
      // recording's own "m" events; given here, they replace the latter.
      markers: source.markers,
      speed,
      fit: 'both',
      controls: true,
      preload: true,
      // No idleTimeLimit: an auditor sees real time, and the markers' times
      // (taken from the audit log) stay aligned with the recording.
    });
    player = p;
    for (const name of ['play', 'playing', 'pause', 'ended']) {
      p.addEventListener(name, () => {
        if (mine === generation) state(name);
      });
    }
    try {
      await p.seek(at); // loads the recording and renders the frame at `at`
      if (mine !== generation) return;
      post({ type: 'loaded', duration: p.getDuration() || 0, speed, time: at });
      if (play) await p.play();
    } catch (err) {
      if (mine === generation) fail(err);
    }
  }

  async function seek(msg) {
    if (!player) return;
    let where;
    if (Number.isInteger(msg.marker) && msg.marker >= 0 && msg.marker < source.markers.length) {
      where = { marker: msg.marker };
    } else {
      const t = Number(msg.t);
      if (!Number.isFinite(t) || t < 0) return;
      where = t;
    }
    try {
      await player.seek(where);
      state('seeked');
    } catch (err) {
      fail(err);
    }
  }

  async function onMessage(event) {
    // Only the console page that framed us may drive the player.
    if (event.source !== window.parent || event.origin !== PARENT_ORIGIN) return;
    const msg = event.data;
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    switch (msg.type) {
      case 'load': {
        if (typeof msg.cast !== 'string' || msg.cast === '') {
          fail('the recording is empty');
          return;
        }
        source = { cast: msg.cast, markers: validMarkers(msg.markers) };
        speed = validSpeed(msg.speed) || 1;
        await create(0, true);
        break;
      }
      case 'ping': // the page may have missed our first "ready"
        if (!source) post({ type: 'ready' });
        break;
      case 'seek':
        await seek(msg);
        break;
      case 'speed': {
        const s = validSpeed(msg.speed);
        if (s === null || s === speed || !source) return;
        const at = currentTime();
        speed = s;
        await create(at, playing);
        break;
      }
      case 'play':
        if (player) player.play().catch(fail);
        break;
      case 'pause':
        if (player) player.pause().catch(fail);
        break;
      default:
        break;
    }
  }

  window.addEventListener('message', (event) => {
    onMessage(event).catch(fail);
  });
  post({ type: 'ready' });
})();
