"""The console's Audit section: search, timelines, playback, exports.

Who sees what: auditors and admins every session, technicians their own
(anyone else's is "not found", never "forbidden", so ids reveal nothing).
Everything here reads; what an auditor opens, plays, downloads or exports is
itself audited (``audit.viewed``, ``recording.accessed``, ``audit.exported``)
before the data leaves, so a log that cannot be written gives nothing away.

Recordings are bytes the customer's machine produced. They are played in a
sandboxed frame (``/audit/player``, an opaque origin that cannot reach the
console's cookies or API) that gets the recording from this page by
``postMessage``; see DESIGN.md "Browser security". What the player gets has
its output bounded like the live view's (``recording/playback.py``);
downloads and bundles carry the recording raw, as sealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from ...protocol.errors import AuditUnavailable, NotFound, ProtocolError
from ..audit.bundle import write_bundle
from ..audit.exports import MARKERS, csv_text, iso, jsonl_line, markers, parse_day
from ..audit.log import event_dict
from ..auth.rules import User, only_own
from ..keys import AUDIT, CONFIG, STORE
from ..recording.playback import bounded_cast
from ..recording.space import disk_low
from ..store.schema import OUTCOMES
from .security import client_ip, require_user
from .views import render_page

routes = web.RouteTableDef()
EXPORTS = asyncio.Semaphore(1)
PAGE_SIZE = 25
#: timeline rows per page of a session record (a churned session has thousands)
TIMELINE_PAGE = 200
EXPORT_PAGE = 2000
PLAYER_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox allow-scripts"
)
#: events an auditor reads as "consents asked and given"
CONSENT_ACTIONS = ("session.claimed", "session.consented", "session.refused",
                   "session.consent_timeout", "channel.requested", "channel.consented",
                   "channel.refused", "channel.consent_timeout")
#: events the recordings' markers are made of (``exports.markers``)
MARKER_ACTIONS = ("recording.started", "session.consented", *MARKERS)


async def _session(request: web.Request, user: User) -> dict[str, Any]:
    row = await request.app[STORE].session_row(request.match_info["id"])
    mine = only_own(user, reading=True)
    if row is None or (mine is not None and row["technician_id"] != mine):
        raise NotFound("no such session")
    return row


async def _audit(request: web.Request, user: User, action: str,
                 session_id: str | None = None, **detail: Any) -> None:
    """Audit a look at the record. The session it concerns is named in the detail, not
    as the event's session: the session's own timeline (which its technician can read
    and export) does not show who audited it."""
    if session_id is not None:
        detail["session"] = session_id
    await request.app[AUDIT].append(action, actor=user.name, ip=client_ip(request),
                                    **detail)


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store"}


def _range(request: web.Request) -> tuple[int, int]:
    q = request.query
    if not q.get("from") or not q.get("to"):
        raise ProtocolError("give a date range: from=YYYY-MM-DD&to=YYYY-MM-DD")
    since, until = parse_day(q["from"]), parse_day(q["to"], end=True)
    if until <= since:
        raise ProtocolError("the range ends before it starts")
    return since, until


def _days(since: int, until: int) -> str:
    return f"{iso(since)[:10]}-to-{iso(until - 1)[:10]}"


# --- search and timeline -------------------------------------------------------


@routes.get("/audit")
async def audit_list(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    q = {k: request.query.get(k, "").strip()[:200]
         for k in ("technician", "machine", "from", "to", "outcome", "q")}
    if q["outcome"] and q["outcome"] not in OUTCOMES:
        raise ProtocolError("unknown outcome")
    page = _page_number(request)
    rows, total = await request.app[STORE].search_sessions(
        only_own(user, reading=True), technician=q["technician"], machine=q["machine"],
        since_us=parse_day(q["from"]) if q["from"] else None,
        until_us=parse_day(q["to"], end=True) if q["to"] else None,
        outcome=q["outcome"], text=q["q"], limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return render_page(request, "audit.html", {
        "user": user, "title": "Audit", "filters": q, "outcomes": list(OUTCOMES),
        "sessions": [_summary(r) for r in rows], "total": total, "page": page,
        "pages": pages, "query": {k: v for k, v in q.items() if v},
        "all_sessions": only_own(user, reading=True) is None,
    })


def _page_number(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("page", "1")), 10**6))
    except ValueError:
        raise ProtocolError("page must be a number") from None


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "state": row["state"], "consent": row["consent"],
        "created": iso(row["created_us"]), "ended": iso(row["ended_us"]),
        "end_reason": row["end_reason"], "client_ip": row["client_ip"],
        "machine": row["machine"], "os": row["os"], "customer_user": row["customer_user"],
        "technician": {"name": row["tech_name"], "display_name": row["tech_display_name"],
                       "org": row["tech_org"]},
    }


def _timeline(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "time": iso(event["ts_us"]),
            "details": [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
                        for k, v in sorted(event["detail"].items())]}


@routes.get("/audit/sessions/{id}")
async def audit_session(request: web.Request) -> web.StreamResponse:
    """One page of the timeline (:data:`TIMELINE_PAGE` events); the consents and the
    recordings' markers are read by action, so neither costs a pass over every event."""
    user = await require_user(request)
    row = await _session(request, user)
    store = request.app[STORE]
    page = _page_number(request)
    await _audit(request, user, "audit.viewed", row["id"])
    total = await store.session_event_count(row["id"])
    pages = max(1, math.ceil(total / TIMELINE_PAGE))
    page = min(page, pages)

    async def read(**how: Any) -> list[dict[str, Any]]:
        return [event_dict(e) for e in await store.session_events_page(row["id"], **how)]

    marking = await read(actions=MARKER_ACTIONS)
    recordings = [{
        "channel": r["channel_id"], "bytes": r["bytes"], "sha256": r["sha256"],
        "closed": iso(r["closed_us"]), "purged": iso(r["purged_us"]) or None,
        "markers": markers(marking, r["channel_id"]),
    } for r in await store.recordings_for(row["id"])]
    timeline = [_timeline(e) for e in await read(offset=(page - 1) * TIMELINE_PAGE,
                                                 limit=TIMELINE_PAGE)]
    return render_page(request, "audit_session.html", {
        "user": user, "title": "Session record", "session": _summary(row),
        "timeline": timeline, "recordings": recordings, "page": page, "pages": pages,
        "total": total,
        "consents": [_timeline(e) for e in await read(actions=CONSENT_ACTIONS)],
    })


# --- recordings ------------------------------------------------------------------


async def _recording(request: web.Request, user: User) -> tuple[dict[str, Any], Path]:
    row = await _session(request, user)
    channel = request.match_info["cid"]
    for rec in await request.app[STORE].recordings_for(row["id"]):
        if rec["channel_id"] == channel and rec["purged_us"] is None:
            path = request.app[CONFIG].data / rec["path"]
            if path.is_file():
                return rec, path
    raise NotFound("no such recording")


async def _send_recording(request: web.Request, how: str) -> web.StreamResponse:
    user = await require_user(request)
    rec, path = await _recording(request, user)
    await _audit(request, user, "recording.accessed", rec["session_id"],
                 channel=rec["channel_id"], how=how)
    if how == "play":  # to a terminal emulator: within the live view's bounds
        return await _play(request, path)
    headers = {**_attachment(f"{rec['session_id']}-{rec['channel_id']}.cast"),
               "Content-Type": "application/x-asciicast"}
    return web.FileResponse(path, headers=headers)  # raw, as sealed


async def _play(request: web.Request, path: Path) -> web.StreamResponse:
    """The recording for the player, its output bounded (recording/playback.py)."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "Cache-Control": "no-store"})
    response.enable_chunked_encoding()
    blocks = bounded_cast(path)
    try:
        await response.prepare(request)
        while (block := await asyncio.to_thread(next, blocks, b"")):
            await response.write(block)
    finally:
        with contextlib.suppress(ValueError):  # still running in its thread: closed when freed
            blocks.close()
    await response.write_eof()
    return response


@routes.get("/api/audit/sessions/{id}/recordings/{cid}")
async def recording_for_player(request: web.Request) -> web.StreamResponse:
    """The recording as text, for the page to hand to the player frame."""
    return await _send_recording(request, "play")


@routes.get("/audit/sessions/{id}/recordings/{cid}.cast")
async def recording_download(request: web.Request) -> web.StreamResponse:
    return await _send_recording(request, "download")


@routes.get("/audit/player")
async def player(request: web.Request) -> web.StreamResponse:
    """The sandboxed player frame: no data of its own, so no sign-in."""
    response = render_page(request, "player.html", {"title": "Player"})
    response.headers["Content-Security-Policy"] = PLAYER_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


# --- exports -----------------------------------------------------------------------


@routes.get("/audit/sessions/{id}/events.{fmt:(jsonl|csv)}")
async def session_events_export(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    row = await _session(request, user)
    fmt = request.match_info["fmt"]
    events = await request.app[STORE].session_events(row["id"])
    await _audit(request, user, "audit.exported", row["id"], format=fmt, events=len(events))
    if fmt == "csv":
        body, kind = csv_text(events), "text/csv"
    else:
        body, kind = "".join(jsonl_line(e) for e in events), "application/x-ndjson"
    return web.Response(text=body, content_type=kind, charset="utf-8",
                        headers=_attachment(f"{row['id']}-events.{fmt}"))


@routes.get("/audit/export.jsonl")
async def siem_export(request: web.Request) -> web.StreamResponse:
    """Every event of a date range as JSONL, streamed a page at a time."""
    user = await require_user(request, "auditor", "admin")
    since, until = _range(request)
    await _audit(request, user, "audit.exported", format="jsonl", since=iso(since),
                 until=iso(until))
    response = web.StreamResponse(headers={
        **_attachment(f"tether-audit-{_days(since, until)}.jsonl"),
        "Content-Type": "application/x-ndjson; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    after = 0
    while True:
        rows = await request.app[STORE].events_between(since, until, after, EXPORT_PAGE)
        if not rows:
            break
        await response.write("".join(jsonl_line(r) for r in rows).encode())
        after = rows[-1]["seq"]
    await response.write_eof()
    return response


async def _bundle(request: web.Request, user: User, name: str,
                  **scope: Any) -> web.StreamResponse:
    config, audit = request.app[CONFIG], request.app[AUDIT]
    if audit.key is None or disk_low(config):
        raise AuditUnavailable("the broker cannot make an export now (its disk is nearly full)")
    await audit.checkpoint("export")  # sign everything the bundle covers
    tmp = Path(tempfile.mkdtemp(prefix="bundle-", dir=config.data))
    out = tmp / "bundle.zip"
    try:
        async with EXPORTS:  # one at a time: each is staged on the data volume
            info = await asyncio.to_thread(write_bundle, config.data, out, audit.key, **scope)
        await _audit(request, user, "audit.exported", scope.get("session_id"), format="bundle",
                     first_seq=info["start_seq"], last_seq=info["end_seq"])
        response = web.StreamResponse(headers={**_attachment(name),
                                               "Content-Type": "application/zip"})
        response.content_length = out.stat().st_size
        await response.prepare(request)
        with out.open("rb") as f:
            while block := await asyncio.to_thread(f.read, 1 << 20):
                await response.write(block)
        await response.write_eof()
        return response
    finally:
        out.unlink(missing_ok=True)
        tmp.rmdir()


@routes.get("/audit/sessions/{id}/bundle.zip")
async def session_bundle(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    row = await _session(request, user)
    return await _bundle(request, user, f"tether-audit-{row['id']}.zip", session_id=row["id"])


@routes.get("/audit/bundle.zip")
async def range_bundle(request: web.Request) -> web.StreamResponse:
    user = await require_user(request, "auditor", "admin")
    since, until = _range(request)
    name = f"tether-audit-{_days(since, until)}.zip"
    return await _bundle(request, user, name, since_us=since, until_us=until)
