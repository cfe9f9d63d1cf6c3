"""``tether-broker user ...``: accounts from the command line.

A running broker notices each change within ``user_poll`` seconds and revokes
what the change takes away (``accounts.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ...protocol.sanitize import clean_text
from .. import certs
from ..clitools import data_dir, on_store
from ..store.sqlite import Store
from . import totp
from .passwords import Passwords


def _password_hash_from_stdin(args: argparse.Namespace) -> str:
    """Read one line from stdin (never argv, never echoed) and hash it."""
    if not args.password_stdin:
        raise SystemExit("tether-broker: use --password-stdin (never a password in argv)")
    password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise SystemExit("tether-broker: the password must have at least 8 characters")
    return Passwords(1).hash_sync(password)


def _new_totp(data: Path, name: str) -> tuple[str, bytes]:
    certs.ensure_totp_key(data / "certs")
    seed = totp.new_seed()
    return seed, totp.SeedBox(data / "certs").seal(name, seed)


def _print_totp(name: str, seed: str) -> None:
    print(f"TOTP secret for {name!r} (shown once; add it to an authenticator app): {seed}")
    print(totp.uri(name, seed))


def cmd_user_add(args: argparse.Namespace) -> int:
    data = data_dir(args)
    pw_hash = _password_hash_from_stdin(args)
    seed, sealed = _new_totp(data, args.name)

    # shown to customers and in the console: no control or bidi characters
    display, org = clean_text(args.display_name or args.name, 80), clean_text(args.org or "", 80)

    async def add(store: Store) -> int:
        if await store.user_by_name(args.name):
            return 0
        return await store.add_user(args.name, args.role, display, org, pw_hash, sealed)

    uid = on_store(data, add)
    if not uid:
        print(f"tether-broker: user {args.name!r} already exists", file=sys.stderr)
        return 1
    info = {"id": uid, "name": args.name, "role": args.role, "display_name": display,
            "org": org}
    if args.json:
        print(json.dumps({**info, "totp_secret": seed, "otpauth_uri": totp.uri(args.name, seed)}))
    else:
        print(f"Added {args.role} {args.name!r}")
        _print_totp(args.name, seed)
    return 0


def _update(args: argparse.Namespace, done: str, **values: Any) -> int:
    changed = on_store(data_dir(args), lambda store: store.update_user(args.name, **values))
    if changed is None:
        print(f"tether-broker: no user {args.name!r}", file=sys.stderr)
        return 1
    print(done if changed else f"Nothing to change for {args.name!r}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    return _update(args, f"Password changed for {args.name!r}; their sign-ins are ended",
                   password_hash=_password_hash_from_stdin(args))


def cmd_user_disable(args: argparse.Namespace) -> int:
    return _update(args, f"Disabled {args.name!r}: their sign-ins, consoles and channels end",
                   disabled=1)


def cmd_user_enable(args: argparse.Namespace) -> int:
    return _update(args, f"Enabled {args.name!r}", disabled=0)


def cmd_user_role(args: argparse.Namespace) -> int:
    return _update(args, f"{args.name!r} is now {args.role}; their sign-ins are ended",
                   role=args.role)


def cmd_user_totp(args: argparse.Namespace) -> int:
    seed, sealed = _new_totp(data_dir(args), args.name)
    code = _update(args, f"New authentication secret for {args.name!r}", totp_seed=sealed,
                   totp_step=0)
    if code == 0:
        _print_totp(args.name, seed)
    return code


def cmd_user_list(args: argparse.Namespace) -> int:
    users = on_store(data_dir(args), lambda store: store.users())
    if args.json:
        print(json.dumps(users))
        return 0
    print(f"{'NAME':20} {'ROLE':11} {'STATE':9} DISPLAY NAME")
    for u in users:
        state = "disabled" if u["disabled"] else "active"
        print(f"{u['name']:20} {u['role']:11} {state:9} {u['display_name']}")
    return 0
