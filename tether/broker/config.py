"""Broker settings. Every timeout is here so tests can shorten it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey


@dataclass
class Config:
    data: Path
    host: str = "127.0.0.1"
    port: int = 8443
    public_url: str | None = None
    #: lifetime of a session code
    code_ttl: float = 600.0
    #: time for both ends of a channel to present their secrets after a yes,
    #: and for a viewer to re-attach after a detach
    pair_timeout: float = 60.0
    #: how long the broker waits for a consent answer (the client's own
    #: prompt timeout, 60 s by default, plus a margin)
    consent_wait: float = 75.0
    #: a client whose connection drops may resume its session within this time
    resume_window: float = 30.0
    idle_timeout: float = 3600.0
    max_session: float = 8 * 3600.0
    #: clients waiting with a code, per source IP and in all (clients in a session
    #: hold no code); over either, a new client is told to wait and retry. With
    #: the failure limits below they bound a guesser's odds (README, "Session codes")
    max_codes_per_ip: int = 10
    max_live_codes: int = 30
    #: new codes (hellos answered) per source IP in ``new_code_window`` seconds
    new_codes_per_ip: int = 10
    new_code_window: float = 600.0
    #: redemption failures per technician in ``fail_window`` seconds, and per IP in
    #: ``ip_fail_window`` (or ``fail_window`` if shorter: an office behind one NAT
    #: shares the address, so its limit is not a day long); a stale code or a typo
    #: costs none
    redeem_failures_per_user: int = 3
    redeem_failures_per_ip: int = 10
    fail_window: float = 86400.0
    ip_fail_window: float = 600.0
    #: summary audit events (failed codes and sign-ins, clients that never had a
    #: session) are written this often (and at least once per ``fail_window``)
    summary_interval: float = 60.0
    #: control messages a client may send: a burst, then this many per second
    control_burst: int = 60
    control_rate: float = 10.0
    #: resumes of one session: a burst at once, then one per ``resume_every`` seconds
    #: (a resume over the rate waits for its turn; it is never refused)
    resume_burst: int = 5
    resume_every: float = 5.0
    #: failures per minute across everyone above which every redemption slows
    global_failures_per_min: int = 100
    global_slowdown: float = 1.0
    #: sign-in failures (per address, per user name) before delays start, and over what time
    signin_free_failures: int = 5
    signin_window: float = 600.0
    #: how often the broker looks for account changes made by another process
    user_poll: float = 0.25
    login_idle: float = 30 * 60.0
    login_absolute: float = 12 * 3600.0
    #: recent output replayed to a viewer that (re)attaches
    scrollback_bytes: int = 256 * 1024
    allowed_origins: list[str] = field(default_factory=list)
    #: signed checkpoints: every N events, every T seconds, and where they go
    checkpoint_every: int = 100
    checkpoint_interval: float = 60.0
    checkpoint_url: str | None = None
    checkpoint_ca: Path | None = None
    checkpoint_syslog: tuple[str, int] | None = None
    #: recording files older than this many days are deleted (None: kept)
    retain_recordings_days: float | None = None
    #: how often retention and the disk guard look again
    housekeeping_interval: float = 60.0
    #: open connections one peer address may hold, and time for a TLS handshake
    max_connections_per_ip: int = 256
    tls_handshake_timeout: float = 10.0
    #: new channels are refused below this much free space on the data volume
    min_free_mb: float = 256.0
    #: the auditor's public key that input typed with echo off is sealed to
    #: (``--reveal-key``; None: it is dropped, only its length and time recorded)
    reveal_key: X25519PublicKey | None = None

    @property
    def summary_window(self) -> float:
        return min(self.summary_interval, self.fail_window)

    @property
    def db_path(self) -> Path:
        return self.data / "tether.db"

    @property
    def certs(self) -> Path:
        return self.data / "certs"

    def origins(self) -> set[str]:
        """Origins a browser may use: --public-url, else the bound address."""
        if self.public_url:
            return {self.public_url.rstrip("/")}
        if self.host in ("0.0.0.0", "::", ""):
            raise ValueError("a wildcard --listen requires --public-url")
        names = {self.host}
        if self.host in ("127.0.0.1", "localhost", "::1"):
            names = {"127.0.0.1", "localhost", "[::1]"}
        elif ":" in self.host:
            names = {f"[{self.host}]"}
        return {f"https://{n}:{self.port}" for n in names} | set(self.allowed_origins)
