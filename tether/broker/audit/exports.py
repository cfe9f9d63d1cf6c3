"""Turning stored events into what auditors take away: JSONL, CSV, markers.

Everything here is data from the log, and part of it came from customers'
machines: CSV cells that a spreadsheet would run as a formula (starting with
``= + - @``, or a tab/CR that hides one) get a leading apostrophe, and JSON
is written with every character escaped that needs it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable
from typing import Any

from ...protocol.errors import ProtocolError
from ..housekeeping import DAY_US
from .log import event_dict

CSV_COLUMNS = ("seq", "time", "session_id", "actor", "action", "ip", "detail")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: channel events shown as markers in the player, with their label. The customer's
#: yes and the viewer attaching/detaching are markers inside the recording already.
MARKERS = {
    "channel.requested": "shell requested",
    "channel.opened": "channel open",
    "channel.closed": "channel closed",
    "chat.message": "chat",
}


def iso(ts_us: int | None) -> str:
    if ts_us is None:
        return ""
    return dt.datetime.fromtimestamp(ts_us / 1e6, dt.UTC).isoformat(timespec="milliseconds")


def parse_day(text: str, *, end: bool = False) -> int:
    """``YYYY-MM-DD`` (UTC) as microseconds: its start, or with ``end`` the next day's."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ProtocolError("dates are written YYYY-MM-DD") from None
    if not 1970 <= day.year <= 9998:
        raise ProtocolError("dates are between 1970 and 9998")
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1e6)
    return start + DAY_US if end else start


def jsonl_line(row: dict[str, Any]) -> str:
    event = event_dict(row)
    event["time"] = iso(row["ts_us"])
    event["hash"] = bytes(row["hash"]).hex()
    event["prev_hash"] = bytes(row["prev_hash"]).hex()
    return json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n"


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([safe_cell(v) for v in (
            row["seq"], iso(row["ts_us"]), row["session_id"], row["actor"], row["action"],
            row["ip"], row["detail"])])
    return out.getvalue()


def markers(events: list[dict[str, Any]], channel_id: str) -> list[tuple[float, str]]:
    """Player markers for one channel's recording: (seconds into it, label).

    ``events`` are :func:`.audit.event_dict` forms (details parsed). Time zero
    is when the recording file was opened (``started_us`` of the channel's
    ``recording.started`` event); what happened before shows at 0.
    """
    started = next((e for e in events if e["action"] == "recording.started"
                    and e["detail"].get("channel") == channel_id), None)
    if started is None:
        return []
    start = started["detail"].get("started_us", started["ts_us"])
    found: list[tuple[float, str]] = [(0.0, "session consented")] if any(
        e["action"] == "session.consented" for e in events) else []
    for e in events:
        label = MARKERS.get(e["action"])
        if label and e["detail"].get("channel") in (channel_id, None):
            found.append((max(0.0, round((e["ts_us"] - start) / 1e6, 3)), label))
    return sorted(found)
