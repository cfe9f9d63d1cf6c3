from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import Broker, Customer, Technician

# Timing is never an assertion (bench/ measures it): hypothesis's per-example deadline
# failed a property test on a loaded machine although every example was right.
settings.register_profile("tether", deadline=None)
settings.load_profile("tether")

PASSWORD = "correct horse " + secrets.token_hex(4)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_broker(data: Path, *extra: str) -> Broker:
    broker = Broker(data, *extra).init()
    broker.add_user("alice", PASSWORD)
    return broker


@pytest.fixture
def broker_args() -> list[str]:
    """Override in a module to pass flags to ``tether-broker serve``."""
    return ["--pair-timeout", "5", "--consent-wait", "8"]


@pytest.fixture
def broker(data: Path, broker_args: list[str]) -> Iterator[Broker]:
    b = make_broker(data, *broker_args).start()
    yield b
    b.stop()


@pytest.fixture
async def tech(broker: Broker) -> AsyncIterator[Technician]:
    t = Technician(broker)
    status, _ = await t.login("alice", PASSWORD)
    assert status == 200
    yield t
    await t.close()


@pytest.fixture
def customers(broker: Broker, tmp_path: Path) -> Iterator[list[Customer]]:
    made: list[Customer] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture
def customer(broker: Broker, customers: list[Customer], tmp_path: Path) -> Customer:
    c = Customer(broker, "--consent-timeout", "5", tmp=tmp_path)
    customers.append(c)
    return c
