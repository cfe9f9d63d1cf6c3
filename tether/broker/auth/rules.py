"""Who may see and act on which sessions: the one access rule, and the user record.

The web and SSH front doors hold a signed-in user as a store row; the core
gets a :class:`User`, a typed, frozen record of what it needs (who, shown
how, with which role), made once at the door.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("technician", "auditor", "admin")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    display_name: str
    org: str

    @classmethod
    def of(cls, row: Mapping[str, Any] | User) -> User:
        if isinstance(row, User):
            return row
        return cls(id=int(row["id"]), name=str(row["name"]), role=str(row["role"]),
                   display_name=str(row["display_name"]), org=str(row["org"]))

    def public(self) -> dict[str, str]:
        """What the console shows of a technician."""
        return {"name": self.name, "display_name": self.display_name, "org": self.org}


def only_own(user: Mapping[str, Any] | User, *, reading: bool = False) -> int | None:
    """The technician id whose sessions ``user`` is limited to, or None for all.

    Admins act on and read every session; auditors read every session's record
    but act on none; technicians act on and read their own."""
    u = User.of(user)
    if u.role == "admin" or (reading and u.role == "auditor"):
        return None
    return u.id


def may_act_on(user: Mapping[str, Any] | User, technician_id: int) -> bool:
    mine = only_own(user)
    return mine is None or mine == technician_id


def may_request_channels(user: Mapping[str, Any] | User) -> bool:
    return User.of(user).role in ("technician", "admin")
