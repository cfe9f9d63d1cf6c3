"""``tether-client``: show a code, ask the customer, run what they allow.

This module is the front door only (arguments, banner, exit codes); the client
itself is :class:`tether.client.app.Client`.

Exit codes: 0 the session ended (by either side) or Ctrl-C; 2 usage;
3 certificate or host-name failure; 4 the broker refused this client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .. import __version__
from . import reaper, tunnel
from .app import Client
from .tunnel import Outcome

EXIT_OK, EXIT_USAGE, EXIT_TLS, EXIT_REFUSED = 0, 2, 3, 4
EXIT_CODES: dict[Outcome, int] = {
    Outcome.ENDED: EXIT_OK,
    Outcome.TLS: EXIT_TLS,
    Outcome.REFUSED: EXIT_REFUSED,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether-client",
                                description="Let a technician help you, with your consent.")
    p.add_argument("--broker", required=True, help="https://HOST:PORT of your support broker")
    p.add_argument("--ca", required=True, help="the broker's CA certificate (PEM)")
    p.add_argument("--allow-root", action="store_true", help="allow sharing a root shell")
    p.add_argument("--consent-timeout", type=float, default=60.0,
                   help="seconds to answer a prompt before it counts as no (default 60)")
    p.add_argument("--no-watch", action="store_true", help="do not show the shell's output")
    p.add_argument("--shell", help="shell to run instead of your login shell")
    p.add_argument("--log", help="local log file (default ~/.local/state/tether/client.log)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        tunnel.ws_base(args.broker)
    except ValueError as exc:
        print(f"tether-client: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not Path(args.ca).is_file():
        print(f"tether-client: no CA file at {args.ca}", file=sys.stderr)
        return EXIT_USAGE
    reaper.become_subreaper()
    print(f"Tether client {__version__} — connecting to {args.broker}", flush=True)
    if os.geteuid() == 0:
        print("Running as root: " + ("a technician may get a ROOT shell if you allow it "
                                     "(--allow-root)." if args.allow_root else
                                     "shell requests will be refused (see --allow-root)."),
              flush=True)
    print("Press Ctrl-C at any time to end the session.", flush=True)
    client = Client(args)
    try:
        import uvloop  # the [fast] extra: less CPU per relayed message

        uvloop.install()
    except ImportError:
        pass
    try:
        return EXIT_CODES[asyncio.run(client.run())]
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
