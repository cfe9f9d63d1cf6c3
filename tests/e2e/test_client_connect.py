"""The client's connection: pinned CA, retries, broker restarts, timeouts."""

from __future__ import annotations

import socket
import time

import pexpect
import pytest

from tests.conftest import make_broker
from tests.e2e.test_support_session import start_shell
from tests.helpers import Broker, Customer, T, script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_wrong_ca_exits_3_at_once(broker, tmp_path):
    other = Broker(tmp_path / "other").init()  # a different CA
    start = time.monotonic()
    c = Customer(broker, ca=other.ca, tmp=tmp_path)
    try:
        c.child.expect("Certificate check failed")
        assert c.wait_exit() == 3
        assert time.monotonic() - start < 3 * T  # no retry loop
    finally:
        c.close()


def test_host_name_not_in_the_certificate_exits_3(tmp_path):
    # 127.0.0.2 is loopback too, but the broker's certificate does not name it
    broker = make_broker(tmp_path / "d").start("127.0.0.2:0")
    c = Customer(broker, tmp=tmp_path)
    try:
        c.child.expect("Certificate check failed")
        assert "127.0.0.2" in c.child.before + c.child.readline()
        assert c.wait_exit() == 3
    finally:
        c.close()
        broker.stop()


def test_unreachable_broker_is_retried_until_it_comes_up(tmp_path):
    port = free_port()
    broker = make_broker(tmp_path / "d")
    c = Customer(broker, url=f"https://127.0.0.1:{port}", tmp=tmp_path)
    try:
        c.child.expect("Cannot reach the broker")
        c.child.expect("retrying in")
        broker.start_on(port)
        assert c.code()
    finally:
        c.close()
        broker.stop()


def test_broker_restart_gives_the_client_a_new_code(tmp_path):
    port = free_port()
    broker = make_broker(tmp_path / "d").start_on(port)
    c = Customer(broker, tmp=tmp_path)
    try:
        first = c.code()
        broker.stop()
        c.child.expect("Cannot reach the broker")
        broker.start_on(port)
        second = c.code()
        assert second != first
    finally:
        c.close()
        broker.stop()


@pytest.fixture
def broker_args() -> list[str]:
    return ["--idle-timeout", "2"]


async def test_idle_session_ends(tech, customer):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.expect(r"# |\$ ")
    s = await tech.wait_for(sid, lambda s: s["state"] == "ended", "idle end")
    assert s["end_reason"] == "idle timeout"
    assert customer.wait_exit() == 0


def test_client_usage_errors_exit_2(tmp_path):
    child = pexpect.spawn(script("tether-client"), ["--broker", "http://plain", "--ca", "x"],
                          encoding="utf-8", timeout=T)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
