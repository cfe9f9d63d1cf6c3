"""The second factor (broker/auth/totp.py): which codes ``accept`` takes, and ``SeedBox``.

* A code is good for its 30-second step and one step either side (clock drift),
  never two steps away, and only for a step later than the last one used:
  each value works once.
* Seeds are sealed with AES-256-GCM under ``certs/totp.key`` with the user name
  as associated data: a sealed seed does not open under another name, another
  key, or after any change to its bytes.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import assume, given
from hypothesis import strategies as st

from tether.broker import certs
from tether.broker.auth import totp
from tether.broker.auth.totp import STEP, SeedBox, accept

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_700_000_015.0  # 15 s into step 56_666_667
CURRENT = int(NOW // STEP)


def code(seed: str, step: int) -> str:
    return str(pyotp.TOTP(seed).at(step * STEP))


def window_codes(seed: str, step: int) -> set[str]:
    return {code(seed, s) for s in (step - 1, step, step + 1)}


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    certs.ensure_totp_key(d)
    return d


@pytest.fixture(scope="module")
def box(key_dir: Path) -> SeedBox:
    return SeedBox(key_dir)


# --- accept ------------------------------------------------------------------------


def test_the_current_code_is_accepted_for_its_step() -> None:
    assert accept(SEED, code(SEED, CURRENT), 0, NOW) == CURRENT


@pytest.mark.parametrize("offset", [-1, 1])
def test_one_step_either_side_is_accepted(offset: int) -> None:
    assert accept(SEED, code(SEED, CURRENT + offset), 0, NOW) == CURRENT + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_two_steps_away_is_refused(offset: int) -> None:
    c = code(SEED, CURRENT + offset)
    assert c not in window_codes(SEED, CURRENT)  # (so the test means what it says)
    assert accept(SEED, c, 0, NOW) is None


def test_each_value_works_once() -> None:
    c = code(SEED, CURRENT)
    step = accept(SEED, c, 0, NOW)
    assert step == CURRENT
    assert accept(SEED, c, step, NOW) is None  # replay
    assert accept(SEED, code(SEED, CURRENT - 1), step, NOW) is None  # an older one
    assert accept(SEED, code(SEED, CURRENT + 1), step, NOW) == CURRENT + 1  # the next one


def test_a_used_future_step_blocks_the_current_one() -> None:
    assert accept(SEED, code(SEED, CURRENT), CURRENT + 1, NOW) is None


def test_the_code_still_works_in_the_next_step() -> None:
    """Typed in the last second of its step, arriving in the next one."""
    c = code(SEED, CURRENT)
    assert accept(SEED, c, 0, (CURRENT + 1) * STEP + 5) == CURRENT
    assert accept(SEED, c, 0, (CURRENT + 2) * STEP + 5) is None


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12345a", "abcdef", "１２３４５６",
                                   "12\u200b3456", "-12345", "+12345", "123\n456", "٣٣٣٣٣٣"])
def test_malformed_codes_are_refused(typed: str) -> None:
    assert accept(SEED, typed, 0, NOW) is None


def test_spaces_are_ignored() -> None:
    c = code(SEED, CURRENT)
    assert accept(SEED, f" {c[:3]} {c[3:]} ", 0, NOW) == CURRENT


def test_another_seeds_code_is_refused() -> None:
    other = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    c = code(other, CURRENT)
    assert c not in window_codes(SEED, CURRENT)
    assert accept(SEED, c, 0, NOW) is None


@given(seed=st.binary(min_size=20, max_size=20), t=st.integers(10**8, 4 * 10**9),
       offset=st.integers(-5, 5), last=st.integers(-3, 3))
def test_accept_matches_the_rule(seed: bytes, t: int, offset: int, last: int) -> None:
    """accept(code of step s) == s exactly when |s - now| <= 1 and s > last_step."""
    b32 = base64.b32encode(seed).decode()
    now_step = t // STEP
    step = now_step + offset
    c = code(b32, step)
    # a 6-digit collision with another step in the window would make the rule ambiguous
    others = {s for s in range(now_step - 1, now_step + 2) if s != step and code(b32, s) == c}
    assume(not others)
    expected = step if abs(offset) <= 1 and step > now_step + last else None
    assert accept(b32, c, now_step + last, float(t)) == expected


@given(typed=st.text(max_size=12))
def test_accept_never_raises(typed: str) -> None:
    result = accept(SEED, typed, 0, NOW)
    assert result is None or result in (CURRENT - 1, CURRENT, CURRENT + 1)


# --- seeds ---------------------------------------------------------------------------


def test_new_seeds_are_160_bit_base32_and_differ() -> None:
    seeds = {totp.new_seed() for _ in range(50)}
    assert len(seeds) == 50
    for s in seeds:
        assert len(s) == 32 and len(base64.b32decode(s)) == 20


def test_the_uri_is_for_an_authenticator_app() -> None:
    uri = totp.uri("bob@example", SEED)
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/Tether:bob%40example"
    q = parse_qs(parts.query)
    assert q["secret"] == [SEED] and q["issuer"] == ["Tether"]
    assert pyotp.parse_uri(uri).secret == SEED


def test_seedbox_round_trip_and_fresh_nonces(box: SeedBox) -> None:
    a, b = box.seal("bob", SEED), box.seal("bob", SEED)
    assert a != b and a[:12] != b[:12]  # a new nonce each time
    assert box.open("bob", a) == box.open("bob", b) == SEED


def test_sealed_seed_does_not_contain_the_seed(box: SeedBox) -> None:
    sealed = box.seal("bob", SEED)
    assert SEED.encode() not in sealed and base64.b32decode(SEED) not in sealed
    assert SEED.lower().encode() not in sealed


def test_another_name_cannot_open_it(box: SeedBox) -> None:
    sealed = box.seal("bob", SEED)
    for name in ("alice", "Bob", "bob ", ""):
        with pytest.raises(InvalidTag):
            box.open(name, sealed)


def test_another_key_cannot_open_it(box: SeedBox, tmp_path: Path) -> None:
    certs.ensure_totp_key(tmp_path)
    with pytest.raises(InvalidTag):
        SeedBox(tmp_path).open("bob", box.seal("bob", SEED))


def test_without_the_key_file_there_is_no_box(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SeedBox(tmp_path)


def test_the_key_file_is_private_and_kept(tmp_path: Path) -> None:
    certs.ensure_totp_key(tmp_path)
    key = (tmp_path / certs.TOTP_KEY).read_bytes()
    assert len(key) == 32
    assert (tmp_path / certs.TOTP_KEY).stat().st_mode & 0o077 == 0
    certs.ensure_totp_key(tmp_path)  # a second init keeps it (or every seed would be lost)
    assert (tmp_path / certs.TOTP_KEY).read_bytes() == key


@given(name=st.text(min_size=1, max_size=64), other=st.text(min_size=1, max_size=64),
       seed=st.binary(min_size=20, max_size=20))
def test_a_seed_opens_only_under_its_own_name(box: SeedBox, name: str, other: str,
                                              seed: bytes) -> None:
    b32 = base64.b32encode(seed).decode()
    sealed = box.seal(name, b32)
    assert box.open(name, sealed) == b32
    if other.encode() != name.encode():
        with pytest.raises(InvalidTag):
            box.open(other, sealed)


@given(seed=st.binary(min_size=20, max_size=20), where=st.integers(0, 10**6),
       flip=st.integers(1, 255))
def test_any_changed_byte_is_detected(box: SeedBox, seed: bytes, where: int, flip: int) -> None:
    b32 = base64.b32encode(seed).decode()
    sealed = bytearray(box.seal("bob", b32))
    sealed[where % len(sealed)] ^= flip
    with pytest.raises(InvalidTag):
        box.open("bob", bytes(sealed))


def test_a_truncated_seal_is_refused(box: SeedBox) -> None:
    sealed = box.seal("bob", SEED)
    for cut in (0, 5, 12, 20, len(sealed) - 1):
        with pytest.raises((InvalidTag, ValueError)):
            box.open("bob", sealed[:cut])
