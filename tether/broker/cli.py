"""``tether-broker``: init | serve | user add/passwd | audit verify/export/keygen/reveal.

``TETHER_DATA`` may replace ``--data`` everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ..protocol import sealed
from ..protocol.errors import TetherError
from . import certs, logs
from .audit import commands as audit_commands
from .auth import commands as user_commands
from .auth.rules import ROLES
from .clitools import data_dir
from .config import Config
from .store.sqlite import Store
from .web.connections import GuardedSite, raise_file_limit

log = logging.getLogger("tether.broker")
T = TypeVar("T")


class JSONAccessLogger(AbstractAccessLogger):
    """Access log lines as JSON; the path carries no secret by design."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("access", extra={
            "method": request.method, "path": request.path[:200], "status": response.status,
            "ms": round(time * 1000, 1), "peer": request.remote,
        })


def _hostport(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, str(default_port)
    return host.strip("[]"), int(port)


def cmd_init(args: argparse.Namespace) -> int:
    data = data_dir(args)
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    (data / "recordings").mkdir(exist_ok=True, mode=0o700)
    prints = certs.ensure(data / "certs", args.hostname or [])

    async def create() -> None:
        store = await Store.open(data / "tether.db")
        await store.close()

    asyncio.run(create())
    print(f"Data directory: {data}")
    print(f"CA certificate: {data / 'certs' / certs.CA_CERT}")
    print(f"CA fingerprint: {prints['ca_fingerprint']}")
    print(f"Audit key fingerprint: {prints['audit_key_fingerprint']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    data = data_dir(args)
    if not (data / "certs" / certs.BROKER_CERT).exists():
        print(f"tether-broker: {data} is not initialised; run `tether-broker init --data {data}`",
              file=sys.stderr)
        return 2
    certs.ensure_totp_key(data / "certs")  # data directories made before TOTP existed
    reveal_key = None
    if args.reveal_key:
        try:
            reveal_key = sealed.public_from_pem(Path(args.reveal_key).read_bytes())
        except OSError as exc:
            print(f"tether-broker: cannot read --reveal-key {args.reveal_key}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        except TetherError as exc:
            print(f"tether-broker: --reveal-key {args.reveal_key}: {exc.message}",
                  file=sys.stderr)
            return 2
        print(f"Hidden input (typed with echo off) is sealed to {sealed.key_id(reveal_key)}",
              flush=True)
    host, port = _hostport(args.listen, 8443)
    config = Config(data=data, host=host, port=port, public_url=args.public_url,
                    code_ttl=args.code_ttl, pair_timeout=args.pair_timeout,
                    consent_wait=args.consent_wait, idle_timeout=args.idle_timeout,
                    resume_window=args.resume_window,
                    max_session=args.max_session, max_codes_per_ip=args.max_codes_per_ip,
                    redeem_failures_per_user=args.redeem_failures,
                    redeem_failures_per_ip=args.redeem_failures_per_ip,
                    fail_window=args.fail_window,
                    checkpoint_every=args.checkpoint_every,
                    checkpoint_interval=args.checkpoint_interval,
                    checkpoint_url=args.checkpoint_url,
                    checkpoint_ca=Path(args.checkpoint_ca) if args.checkpoint_ca else None,
                    checkpoint_syslog=(_hostport(args.checkpoint_syslog, 514)
                                       if args.checkpoint_syslog else None),
                    retain_recordings_days=args.retain_recordings_days,
                    max_connections_per_ip=args.max_connections_per_ip,
                    min_free_mb=args.min_free_mb, reveal_key=reveal_key)
    _load_limits(config, args)
    if host in ("0.0.0.0", "::", "") and not args.public_url:
        print("tether-broker: a wildcard --listen requires --public-url", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_serve(config))


#: serve flags that set a Config field of the same name (the load limits)
LIMIT_FLAGS = ("max_live_codes", "new_codes_per_ip", "new_code_window", "summary_interval",
               "control_burst", "control_rate", "resume_burst", "resume_every")


def _load_limits(config: Config, args: argparse.Namespace) -> None:
    for name in LIMIT_FLAGS:
        setattr(config, name, getattr(args, name))


def _limit_flags(serve: argparse.ArgumentParser) -> None:
    """The flood limits (README, "Limits"): each one a Config field; tests shorten them."""
    d = Config(data=Path("."))
    serve.add_argument("--max-live-codes", type=int, default=d.max_live_codes,
                       help="clients waiting with a code, in all; more wait and retry"
                            f" (default {d.max_live_codes})")
    serve.add_argument("--new-codes-per-ip", type=int, default=d.new_codes_per_ip,
                       help="new clients given a code per address per --new-code-window;"
                            f" more wait and retry (default {d.new_codes_per_ip})")
    serve.add_argument("--new-code-window", type=float, default=d.new_code_window,
                       help=f"seconds (default {d.new_code_window:.0f})")
    serve.add_argument("--summary-interval", type=float, default=d.summary_interval,
                       help="seconds between summary audit events (failures, clients"
                            f" that never had a session; default {d.summary_interval:.0f})")
    serve.add_argument("--control-burst", type=int, default=d.control_burst,
                       help="control messages a client may send at once"
                            f" (default {d.control_burst})")
    serve.add_argument("--control-rate", type=float, default=d.control_rate,
                       help="... and per second after that; over it the connection is"
                            f" closed (default {d.control_rate:.0f})")
    serve.add_argument("--resume-burst", type=int, default=d.resume_burst,
                       help=f"resumes of one session at once (default {d.resume_burst})")
    serve.add_argument("--resume-every", type=float, default=d.resume_every,
                       help="... then one per this many seconds; a faster one waits its"
                            f" turn (default {d.resume_every:.0f})")


async def _serve(config: Config) -> int:
    from .app import make_app

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        print(f"tether-broker: cannot listen on {config.host}:{config.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    sock.listen(512)
    config.port = sock.getsockname()[1]
    ctx = certs.server_tls(config.certs)
    app = make_app(config)
    runner = web.AppRunner(app, access_log_class=JSONAccessLogger,
                           access_log=logging.getLogger("tether.access"),
                           handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before anyone learns we are up
        loop.add_signal_handler(sig, stop.set)
    raise_file_limit()
    site = GuardedSite(runner, sock, ssl_context=ctx, per_ip=config.max_connections_per_ip,
                       handshake_timeout=config.tls_handshake_timeout)
    await site.start()
    shown = f"[{config.host}]" if ":" in config.host else config.host
    print(f"Listening on https://{shown}:{config.port}", flush=True)
    log.info("listening", extra={"peer": f"{config.host}:{config.port}"})
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether-broker", description="Tether remote-support broker")
    p.add_argument("--data", help="data directory (default: $TETHER_DATA)")
    sub = p.add_subparsers(dest="cmd", required=True)

    def data_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data", default=argparse.SUPPRESS, help="data directory")

    init = sub.add_parser("init", help="create the data directory, CA, certificates and keys")
    data_arg(init)
    init.add_argument("--hostname", action="append", help="extra name for the certificate")
    init.set_defaults(fn=cmd_init)

    serve = sub.add_parser("serve", help="run the broker")
    data_arg(serve)
    serve.add_argument("--listen", default="127.0.0.1:8443",
                       help="HOST:PORT for the console and clients (port 0: any free port)")
    serve.add_argument("--ssh-listen", default="127.0.0.1:2222",
                       help="SSH front door (not available yet)")
    serve.add_argument("--public-url",
                       help="the https:// URL browsers use (the only allowed Origin)")
    serve.add_argument("--code-ttl", type=float, default=600.0,
                       help="seconds a session code stays valid (default 600)")
    serve.add_argument("--pair-timeout", type=float, default=60.0,
                       help="seconds for both ends of a channel to connect, or a viewer to"
                            " come back after a reload (default 60)")
    serve.add_argument("--consent-wait", type=float, default=75.0,
                       help="how long to wait for the customer's answer")
    serve.add_argument("--resume-window", type=float, default=30.0,
                       help="seconds a customer whose connection dropped may resume (0: off)")
    serve.add_argument("--idle-timeout", type=float, default=3600.0,
                       help="end a session after this many seconds without traffic")
    serve.add_argument("--max-session", type=float, default=8 * 3600.0,
                       help="longest a session may last, in seconds")
    serve.add_argument("--max-codes-per-ip", type=int, default=10,
                       help="clients waiting with a code per address (clients in a session"
                            " do not count); more wait and retry (default 10)")
    serve.add_argument("--redeem-failures", type=int, default=3,
                       help="failed codes per technician per window (default 3; stale codes"
                            " and typos cost none)")
    serve.add_argument("--redeem-failures-per-ip", type=int, default=10,
                       help="failed codes per address per 10 min, or per --fail-window if"
                            " shorter (default 10: a whole office shares it, so it is not"
                            " a day long)")
    serve.add_argument("--fail-window", type=float, default=86400.0,
                       help="seconds over which a technician's failed codes are counted"
                            " (default 86400)")
    serve.add_argument("--checkpoint-every", type=int, default=100,
                       help="sign the audit log every N events (default 100)")
    serve.add_argument("--checkpoint-interval", type=float, default=60.0,
                       help="... and every T seconds when events were added (default 60)")
    serve.add_argument("--checkpoint-url",
                       help="send each checkpoint off the machine: HTTPS URL to POST it to")
    serve.add_argument("--checkpoint-ca", help="CA file for --checkpoint-url (default: system)")
    serve.add_argument("--checkpoint-syslog", metavar="HOST:PORT",
                       help="send each checkpoint to a syslog collector (UDP, RFC 5424)")
    serve.add_argument("--retain-recordings-days", type=float,
                       help="delete recording files older than this (events are kept)")
    serve.add_argument("--min-free-mb", type=float, default=256.0,
                       help="refuse new channels when the data volume has less free space")
    serve.add_argument("--max-connections-per-ip", type=int, default=256,
                       help="open connections one address may hold (default 256)")
    serve.add_argument("--reveal-key", metavar="FILE",
                       help="the public half of an `audit keygen` key: input typed while the"
                            " customer's terminal hides it (passwords) is kept sealed to it,"
                            " readable only with the private half (default: dropped, only"
                            " its length kept)")
    serve.add_argument("--log-level", default="info")
    _limit_flags(serve)
    serve.set_defaults(fn=cmd_serve)

    user = sub.add_parser("user", help="manage console accounts")
    usub = user.add_subparsers(dest="user_cmd", required=True)
    add = usub.add_parser("add")
    data_arg(add)
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true")
    add.add_argument("--display-name")
    add.add_argument("--org")
    add.add_argument("--json", action="store_true")
    add.set_defaults(fn=user_commands.cmd_user_add)
    passwd = usub.add_parser("passwd", help="set a new password (ends their sign-ins)")
    data_arg(passwd)
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", required=True)
    passwd.set_defaults(fn=user_commands.cmd_user_passwd)
    for name, fn, text in (
        ("disable", user_commands.cmd_user_disable,
         "end their access now (channels, consoles, sign-ins)"),
        ("enable", user_commands.cmd_user_enable, "let a disabled user sign in again"),
        ("totp", user_commands.cmd_user_totp, "give a user a new authentication (TOTP) secret"),
    ):
        sp = usub.add_parser(name, help=text)
        data_arg(sp)
        sp.add_argument("name")
        sp.set_defaults(fn=fn)
    role = usub.add_parser("role", help="change a user's role (ends their sign-ins)")
    data_arg(role)
    role.add_argument("name")
    role.add_argument("--role", choices=ROLES, required=True)
    role.set_defaults(fn=user_commands.cmd_user_role)
    listing = usub.add_parser("list", help="list the console accounts")
    data_arg(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(fn=user_commands.cmd_user_list)

    audit = sub.add_parser("audit", help="check the audit log")
    asub = audit.add_subparsers(dest="audit_cmd", required=True)
    verify = asub.add_parser("verify", help="check the chain, checkpoints and recordings")
    data_arg(verify)
    verify.add_argument("--bundle", metavar="FILE", help="check an export bundle instead")
    verify.add_argument("--key-fingerprint", metavar="FP",
                        help="the audit key fingerprint you trust (from `init`)")
    verify.set_defaults(fn=audit_commands.cmd_audit_verify)
    export = asub.add_parser("export", help="write a self-contained, checkable bundle")
    data_arg(export)
    export.add_argument("--session", help="one session's events and recordings")
    export.add_argument("--since", metavar="YYYY-MM-DD", help="first day (UTC) of a range")
    export.add_argument("--until", metavar="YYYY-MM-DD", help="last day (UTC) of a range")
    export.add_argument("--out", required=True, help="the .zip file to write")
    export.set_defaults(fn=audit_commands.cmd_audit_export)
    keygen = asub.add_parser("keygen", help="make the key pair that hidden input is sealed to"
                                            " (run it on the auditor's machine)")
    keygen.add_argument("--out", required=True, metavar="DIR",
                        help="where to write the private (0600) and public halves")
    keygen.set_defaults(fn=audit_commands.cmd_audit_keygen)
    reveal = asub.add_parser("reveal", help="show a bundle's sealed hidden input, offline")
    reveal.add_argument("--bundle", required=True, metavar="FILE", help="an export bundle")
    reveal.add_argument("--key", required=True, metavar="PRIVATE",
                        help="the private half made by `audit keygen`")
    reveal.add_argument("--key-fingerprint", metavar="FP",
                        help="verify the bundle against the audit key you trust first")
    reveal.set_defaults(fn=audit_commands.cmd_audit_reveal)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(getattr(logging, str(getattr(args, "log_level", "info")).upper(), logging.INFO))
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
