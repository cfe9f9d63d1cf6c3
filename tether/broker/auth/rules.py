"""Who may see and act on which sessions: the one access rule."""

from __future__ import annotations

from typing import Any

ROLES = ("technician", "auditor", "admin")


def only_own(user: dict[str, Any], *, reading: bool = False) -> int | None:
    """The technician id whose sessions ``user`` is limited to, or None for all.

    Admins act on and read every session; auditors read every session's record
    but act on none; technicians act on and read their own."""
    if user["role"] == "admin" or (reading and user["role"] == "auditor"):
        return None
    return int(user["id"])


def may_act_on(user: dict[str, Any], technician_id: int) -> bool:
    mine = only_own(user)
    return mine is None or mine == technician_id
