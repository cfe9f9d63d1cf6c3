// Dashboard: keeps the sessions table live through /ws/live (all of the
// signed-in user's sessions). Rows are rebuilt from session dicts with
// textContent only; the markup mirrors templates/dashboard.html.
import {
  connectLive, el, fillTimestamps, stateBadge, timestamp, untrusted,
} from './common.js';
import { VOCAB } from './strings.js';

const ENDED = VOCAB.states.session.ENDED;

const body = document.getElementById('sessions-body');
const liveStatus = document.getElementById('live-status');

function customerCell(session) {
  const cell = el('td');
  const customer = session.customer;
  if (customer && typeof customer === 'object') {
    cell.append(el('div', { className: 'machine' }, untrusted(customer.machine)));
    const sub = el('div', { className: 'sub' }, untrusted(customer.os, ''));
    if (customer.os && customer.user) sub.append(' · ');
    sub.append(untrusted(customer.user, ''));
    cell.append(sub);
  } else {
    cell.append(el('div', { className: 'machine muted' },
      session.state === ENDED ? 'Not shared' : 'Not shared yet'));
  }
  cell.append(el('div', { className: 'sub mono' }, String(session.id)));
  return cell;
}

function technicianCell(session) {
  const cell = el('td');
  const tech = session.technician;
  if (tech && typeof tech === 'object') {
    cell.append(el('div', {}, tech.display_name || tech.name || ''));
    if (tech.org) cell.append(el('div', { className: 'sub' }, tech.org));
  } else {
    cell.append(el('span', { className: 'muted' }, '—'));
  }
  return cell;
}

function buildRow(session) {
  const ended = el('td', {}, timestamp(session.ended));
  if (session.end_reason) ended.append(el('div', { className: 'sub' }, session.end_reason));
  const link = el('a', {
    className: 'btn btn-small',
    href: `/sessions/${encodeURIComponent(session.id)}`,
  }, 'Open');
  const row = el('tr', { 'data-session-id': String(session.id) },
    el('td', {}, stateBadge(session.state)),
    customerCell(session),
    technicianCell(session),
    el('td', {}, timestamp(session.created)),
    ended,
    el('td', { className: 'cell-link' }, link));
  row.dataset.created = String(Number(session.created) || 0);
  return row;
}

function findRow(id) {
  for (const row of body.querySelectorAll('tr[data-session-id]')) {
    if (row.dataset.sessionId === String(id)) return row;
  }
  return null;
}

function createdOf(row) {
  if (row.dataset.created) return Number(row.dataset.created) || 0;
  const ts = row.querySelector('time[data-ts]');
  return ts ? Number(ts.dataset.ts) || 0 : 0;
}

function upsert(session) {
  if (!session || typeof session.id !== 'string') return;
  const row = buildRow(session);
  const existing = findRow(session.id);
  if (existing) {
    existing.replaceWith(row);
    return;
  }
  const empty = body.querySelector('tr.empty-row');
  if (empty) empty.remove();
  // Newest first: insert before the first row created earlier than this one.
  const created = Number(session.created) || 0;
  for (const other of body.querySelectorAll('tr[data-session-id]')) {
    if (createdOf(other) < created) {
      other.before(row);
      return;
    }
  }
  body.append(row);
}

function setStatus(text, kind) {
  liveStatus.textContent = text;
  liveStatus.dataset.kind = kind;
}

fillTimestamps();
connectLive('/ws/live', upsert, setStatus);
