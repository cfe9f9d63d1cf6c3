"""What the customer can be asked, how it is worded, and the decisions so far.

The client words every prompt from :data:`WORDING` (its own copy of this
module), never from broker text; only the technician's name and organisation
come from the broker, cleaned. :class:`Ledger` is the pure record of the
customer's decisions in one session, kept by the client (which enforces it)
and mirrored by the broker (which stops asking after :data:`MAX_REFUSALS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .channels import CAPABILITIES
from .sanitize import clean_text

#: refusals of one capability in a session after which it is refused unasked
MAX_REFUSALS = 3

#: the client's prompts, by wording key ({who}: technician (org); {user}: local account)
WORDING: dict[str, str] = {
    "session": "{who} wants to start a remote support session with this computer. "
               "Allow? (They will see this computer's name, system and your user name.)",
    # A same-user shell reaches whatever the account reaches; the question says so rather
    # than promise a wall the client cannot build (README "What a shell can reach").
    "shell": 'Allow {who} to open a shell with full access to your account "{user}"? '
             "Full access means anything you can do: your files, your other programs and "
             "what they hold (such as a running SSH agent), your screen and keyboard (they "
             "could watch your screen, type into your windows and answer questions like "
             "this one) and programs that keep running after the session.",
    "screen.view": "Allow {who} to see your screen?",
    "screen.control": "Allow {who} to control your mouse and keyboard?",
    "clipboard": "Allow {who} to read and write your clipboard?",
    "machine.summary": "Send {who} the summary of this computer shown above?",
    "health.check": "Allow {who} to run a health check on this computer?",
}


class Refusal(StrEnum):
    """Why the client said no: the reason it sends (``ChannelDecision.reason``)."""

    NO = "no"
    TIMEOUT = "timeout"
    NO_TERMINAL = "no terminal"
    REFUSED_BEFORE = "refused 3 times"
    ROOT = "root shell not allowed"
    #: a kind the client does not know or cannot run (not the customer's no)
    UNSUPPORTED = "unsupported"
    #: a channel asked for before the customer allowed the session
    NO_SESSION = "no session"


#: how each refusal is shown to the technician
REFUSAL_TEXT: dict[str, str] = {
    Refusal.NO: "the customer said no",
    Refusal.TIMEOUT: "the customer did not answer",
    Refusal.NO_TERMINAL: "the customer's client has no terminal to ask on",
    Refusal.REFUSED_BEFORE: f"the customer already said no {MAX_REFUSALS} times",
    Refusal.ROOT: "the client runs as root without --allow-root",
    Refusal.UNSUPPORTED: "the customer's client cannot open this kind of channel",
    Refusal.NO_SESSION: "the customer has not allowed the session",
}


def refusal_text(reason: str) -> str:
    """The technician's wording of a client's reason (unknown reasons shown cleaned)."""
    return REFUSAL_TEXT.get(reason, f"refused by the customer ({clean_text(reason, 60)})")


def who(technician: str, org: str) -> str:
    """The technician as the prompt names them; broker text, so cleaned."""
    name = clean_text(technician, 80).strip() or "An unnamed technician"
    org = clean_text(org, 80).strip()
    return f"{name} ({org})" if org else name


def prompt(wording: str, technician: str, org: str, user: str = "") -> str:
    """The fixed question for a wording key (``session`` or a capability's key)."""
    return WORDING[wording].format(who=who(technician, org), user=clean_text(user, 64))


@dataclass
class Ledger:
    """The customer's decisions in one session: pure, no I/O.

    ``allowed`` maps a channel id to the capabilities the customer said yes to
    on it; ``refusals`` counts noes per capability.
    """

    refusals: dict[str, int] = field(default_factory=dict)
    allowed: dict[str, set[str]] = field(default_factory=dict)

    def exhausted(self, capability: str) -> bool:
        """True when the customer has said no often enough: refuse unasked."""
        return self.refusals.get(capability, 0) >= MAX_REFUSALS

    def decide(self, capability: str, channel: str, allow: bool) -> None:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")
        if allow:
            self.allowed.setdefault(channel, set()).add(capability)
        else:
            self.refusals[capability] = self.refusals.get(capability, 0) + 1

    def allows(self, channel: str, capability: str) -> bool:
        return capability in self.allowed.get(channel, ())

    def withdraw(self, channel: str, capability: str) -> None:
        """The customer takes back a capability that can be withdrawn."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")
        if not CAPABILITIES[capability].withdrawable:
            raise ValueError(f"{capability!r} cannot be withdrawn while its channel is open")
        self.allowed.get(channel, set()).discard(capability)

    def closed(self, channel: str) -> None:
        """A channel ended: whatever it allowed ends with it."""
        self.allowed.pop(channel, None)

    def close_all(self) -> None:
        """Every channel ended (refusals still count)."""
        self.allowed.clear()

    def reset(self) -> None:
        """A new session: nothing allowed, no refusals."""
        self.refusals.clear()
        self.allowed.clear()
