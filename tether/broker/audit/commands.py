"""``tether-broker audit verify | export | keygen | reveal``: the auditor's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...protocol import sealed
from ...protocol.checkpoint import key_fingerprint
from ...protocol.errors import TetherError
from .. import certs
from ..clitools import data_dir
from . import reveal
from .bundle import write_bundle
from .exports import parse_day
from .verify import VerifyFailed, verify_bundle, verify_data


def cmd_audit_verify(args: argparse.Namespace) -> int:
    try:
        if args.bundle:
            if not args.key_fingerprint:
                raise SystemExit("tether-broker: --bundle needs --key-fingerprint FP (the audit"
                                 " key fingerprint printed by `tether-broker init`)")
            report = verify_bundle(Path(args.bundle), args.key_fingerprint)
        else:
            data = data_dir(args)
            if not (data / "tether.db").is_file():
                raise SystemExit(f"tether-broker: no tether.db in {data}")
            public_key = certs.load_audit_key(data / "certs").public_key()
            if args.key_fingerprint and key_fingerprint(public_key) != args.key_fingerprint:
                raise VerifyFailed(f"the audit key in {data / 'certs'} is"
                                   f" {key_fingerprint(public_key)}, not {args.key_fingerprint}")
            report = verify_data(data, public_key)
    except VerifyFailed as exc:  # may name members of a hostile bundle: no raw escapes
        print(f"FAILED: {reveal.shown(str(exc).encode())}")
        return 1
    print(report.summary())
    if args.bundle:
        print(f"{report.full} events in full, {report.events - report.full} as digests,"
              f" events {report.first_seq}..{report.first_seq + report.events - 1}"
              f" ({report.scope})")
    if report.purged:
        print(f"{report.purged} recordings were removed by retention (recording.purged)")
    if report.unsigned:
        print(f"{report.unsigned} latest events are not signed by a checkpoint yet")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    data = data_dir(args)
    if not args.session and not (args.since and args.until):
        raise SystemExit("tether-broker: give --session ID, or --since DAY and --until DAY")
    key = certs.load_audit_key(data / "certs")
    try:
        info = write_bundle(
            data, Path(args.out), key, session_id=args.session,
            since_us=parse_day(args.since) if args.since else None,
            until_us=parse_day(args.until, end=True) if args.until else None)
    except TetherError as exc:
        print(f"tether-broker: {exc.message}", file=sys.stderr)
        return 1
    print(f"Wrote {args.out}: events {info['start_seq']}..{info['end_seq']},"
          f" {info['full']} in full")
    print(f"Check it with: tether-broker audit verify --bundle {args.out}"
          f" --key-fingerprint {key_fingerprint(key.public_key())}")
    return 0


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        private, public, kid = reveal.keygen(out)
    except FileExistsError as exc:
        print(f"tether-broker: {exc.filename} exists; keygen never replaces a key",
              file=sys.stderr)
        return 1
    print(f"Private key: {private} (readable only by you; keep it offline, never on the"
          " broker)")
    print(f"Public key: {public}")
    print(f"Reveal key id: {kid}")
    print(f"Give the broker the public half: tether-broker serve --reveal-key {public}")
    return 0


def cmd_audit_reveal(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle)
    try:
        key = sealed.private_from_pem(Path(args.key).read_bytes())
    except OSError as exc:
        print(f"tether-broker: cannot read {args.key}: {exc.strerror}", file=sys.stderr)
        return 2
    except TetherError as exc:
        print(f"tether-broker: {args.key}: {exc.message}", file=sys.stderr)
        return 2
    try:
        if args.key_fingerprint:
            verify_bundle(bundle, args.key_fingerprint)
        else:
            print("note: the bundle was not verified (give --key-fingerprint FP to check it"
                  " first)", file=sys.stderr)
        lines = reveal.reveal(bundle, key)
    except VerifyFailed as exc:  # may name members of an unverified (hostile) bundle
        print(f"FAILED: {reveal.shown(str(exc).encode())}")
        return 1
    for line in lines:
        print(f"{reveal.when(line.at_us)} (+{line.offset_us / 1e6:.3f} s) session"
              f" {reveal.shown(line.session.encode())} channel"
              f" {reveal.shown(line.channel.encode())}: {reveal.shown(line.data)}")
    print(f"{len(lines)} runs of hidden input", file=sys.stderr)
    return 0
