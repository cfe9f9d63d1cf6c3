"""Sealed boxes and the hidden-input file format (protocol/sealed.py)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tether.protocol import sealed
from tether.protocol.errors import ProtocolError

KEY = X25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
PUB = KEY.public_key()


def test_a_box_round_trips_and_names_its_recipient() -> None:
    box = sealed.seal(PUB, b"hunter2\r", b"ctx")
    assert sealed.open_box(KEY, box, b"ctx") == b"hunter2\r"
    assert sealed.recipient_of(box) == sealed.key_id(PUB)
    assert box[0] == sealed.VERSION
    assert len(box) == 1 + 32 + 32 + len(b"hunter2\r") + 16
    assert b"hunter2" not in box


def test_each_box_has_its_own_ephemeral_key() -> None:
    a, b = sealed.seal(PUB, b"same"), sealed.seal(PUB, b"same")
    assert a != b and a[33:65] != b[33:65]
    assert sealed.open_box(KEY, a) == sealed.open_box(KEY, b) == b"same"


def test_the_wrong_key_opens_nothing() -> None:
    box = sealed.seal(PUB, b"secret")
    with pytest.raises(ProtocolError, match="sealed to the key SHA256:.*, not to"):
        sealed.open_box(OTHER, box)
    # a box relabelled for the other key still does not open with it
    relabelled = box[:1] + bytes.fromhex(sealed.key_id(OTHER.public_key())[7:]) + box[33:]
    with pytest.raises(ProtocolError, match="altered"):
        sealed.open_box(OTHER, relabelled)


@pytest.mark.parametrize("at", [0, 1, 40, 70, -1])
def test_any_changed_byte_fails(at: int) -> None:
    box = bytearray(sealed.seal(PUB, b"secret", b"ctx"))
    box[at] ^= 0x01
    with pytest.raises(ProtocolError):
        sealed.open_box(KEY, bytes(box), b"ctx")


def test_a_box_moved_to_another_context_fails() -> None:
    box = sealed.seal(PUB, b"secret", b"record 1")
    with pytest.raises(ProtocolError, match="altered"):
        sealed.open_box(KEY, box, b"record 2")


def test_truncated_or_unknown_boxes_fail() -> None:
    box = sealed.seal(PUB, b"x")
    for bad in (b"", box[:60], b"\x02" + box[1:]):
        with pytest.raises(ProtocolError):
            sealed.open_box(KEY, bad)


def test_keys_as_pem_and_a_private_key_is_never_taken_as_the_public_half() -> None:
    private_pem, public_pem = sealed.new_key_pair()
    private = sealed.private_from_pem(private_pem)
    public = sealed.public_from_pem(public_pem)
    assert sealed.key_id(private.public_key()) == sealed.key_id(public)
    with pytest.raises(ProtocolError, match="only the public half"):
        sealed.public_from_pem(private_pem)
    with pytest.raises(ProtocolError):
        sealed.public_from_pem(b"not a key")
    ed = Ed25519PrivateKey.generate().public_key()  # another kind of key is refused too
    pem = ed.public_bytes(serialization.Encoding.PEM,
                          serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ProtocolError, match="not an X25519"):
        sealed.public_from_pem(pem)


def test_hidden_input_records_round_trip_bound_to_their_place() -> None:
    header = sealed.file_header(sealed.key_id(PUB), "c_1", 1_700_000_000_000_000)
    assert sealed.parse_header(header) == (sealed.key_id(PUB), "c_1", 1_700_000_000_000_000)
    line = sealed.record_line(PUB, "c_1", 3, 1, 250_000, b"pass")
    rec = sealed.parse_record(line)
    assert (rec.n, rec.run, rec.us) == (3, 1, 250_000)
    assert rec.open(KEY, "c_1") == b"pass"
    with pytest.raises(ProtocolError):
        rec.open(KEY, "c_2")  # from another channel's file
    moved = json.loads(line)
    moved["n"] = 4  # reordered
    with pytest.raises(ProtocolError):
        sealed.parse_record(json.dumps(moved).encode()).open(KEY, "c_1")


@pytest.mark.parametrize("line", [
    b"", b"[]", b'{"n":0,"run":0,"us":0}', b'{"n":-1,"run":0,"us":0,"box":""}',
    b'{"n":0,"run":0,"us":0,"box":"***"}', b'{"n":0,"run":0,"us":0,"box":1}',
])
def test_malformed_records_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        sealed.parse_record(line)


def test_a_header_of_another_type_is_refused() -> None:
    with pytest.raises(ProtocolError):
        sealed.parse_header(b'{"type":"x","recipient":"k","channel":"c","started_us":1}')
    with pytest.raises(ProtocolError):
        sealed.parse_header(base64.b64encode(b"junk"))
