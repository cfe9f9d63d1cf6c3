"""Against the customer: what a technician's shell can reach or leave behind (issue 10, 3 and 6).

Real broker, real ``tether-client`` in a PTY, a technician over the console's API. The
customer's "desktop" is simulated inside a temporary HOME: agent and X variables in the
client's environment, and a tmux server the test started before the session (the
customer's terminal multiplexer). Everything runs as root in a process tree the test
controls; what the test starts it kills by PID at the end.

* Item 3: the shell's parent (``/proc/$PPID/environ``) must show none of the
  customer's secrets: the shell is started by a launcher whose whole environment is
  clean, not by the client.
* Item 6: a process started through the customer's own tmux is not in the client's tree,
  so it survives the end. The client must not claim otherwise: it says what it stopped,
  lists the escaped process with its PID and a command to stop it, lists the start-up
  file the shell changed, kills nothing on its own, and warns at its next start, before
  showing a code, that the process is still running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.helpers import Customer, T
from tests.security.conftest import Site
from tests.security.tools import browser

SECRETS = {"SSH_AUTH_SOCK": "/tmp/tether-test-agent.sock", "DISPLAY": ":77",
           "XAUTHORITY": "/tmp/tether-test-Xauthority"}


@pytest.fixture(scope="module")
def site(start_broker) -> Site:  # type: ignore[no-untyped-def]
    return start_broker("--pair-timeout", "5", technician=1)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                if "=" in item)


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """The customer's tmux server, started by the test before any session; yields its
    socket and the list of PIDs to kill at the end (the server's first)."""
    sock = tmp_path / "tmux.sock"
    subprocess.run(["tmux", "-S", str(sock), "-f", "/dev/null", "new-session", "-d", "-s",
                    "customer", "sleep 100000"], check=True, timeout=T,
                   env={**os.environ, "HOME": str(tmp_path)})
    out = subprocess.run(["tmux", "-S", str(sock), "display-message", "-p", "#{pid}"],
                         check=True, timeout=T, capture_output=True, text=True)
    started = [int(out.stdout)]
    try:
        yield sock, started
    finally:
        for pid in reversed(started):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def customer_with_secrets(site: Site, tmp: Path, mp: pytest.MonkeyPatch) -> Customer:
    for name, value in SECRETS.items():
        mp.setenv(name, value)
    mp.setenv("XDG_STATE_HOME", str(tmp / "state"))
    mp.delenv("TMUX", raising=False)
    return Customer(site.broker, tmp=tmp)


async def test_escapes_are_listed_never_killed_and_the_shell_parent_is_clean(
        site: Site, tmp_path: Path, tmux: tuple[Path, list[int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sock, started = tmux
    tech = await browser(site.broker, site.take()[0])
    customer = customer_with_secrets(site, tmp_path, monkeypatch)
    again: Customer | None = None
    try:
        assert all(environ(customer.child.pid)[k] == v for k, v in SECRETS.items())
        code = customer.code()
        sid = await tech.session_id(code)
        customer.accept_session()
        await tech.wait_for(sid, lambda s: s["state"] == "active", "session consent")
        cid = await tech.open_shell(sid)
        customer.accept_shell()
        await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "pairing", "shell yes")
        viewer = await tech.attach(sid, cid)

        # item 3: the attack as the issue describes it, from inside the shell ...
        await viewer.send("echo shell=$$ leaks=$(tr '\\0' '\\n' </proc/$PPID/environ"
                          " | grep -c -E '^(SSH_AUTH_SOCK|DISPLAY|XAUTHORITY)=')\r")
        found = await viewer.expect(rb"shell=(\d+) leaks=(\d+)")
        shell = int(found.group(1))
        # ... and as the customer would check it, from outside
        parent = environ(ppid(shell))
        assert not set(SECRETS) & set(parent), sorted(parent)
        assert int(found.group(2)) == 0

        # item 6: a process started through the customer's tmux, and a changed rc file
        await viewer.send(f"tmux -S {sock} new-session -d -s escaped 'exec sleep 4242'; "
                          f"echo pane=$(tmux -S {sock} display-message -p -t escaped "
                          "'#{pane_pid}'); echo 'echo hello-from-tether' >> ~/.bashrc; "
                          "echo rc=done\r")
        pane = int((await viewer.expect(rb"pane=(\d+)")).group(1))
        started.insert(0, pane)
        await viewer.expect(rb"rc=done")
        assert alive(pane) and ppid(pane) == started[-1]  # the tmux server's child

        assert customer.end() == 0
        said = customer.child.before or ""
        flat = re.sub(r"\s+", " ", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", said))
        assert "Nothing the technician started is still running" not in flat
        stopped = re.search(r"Stopped (\d+) process(?:es)? of the technician's shells", flat)
        assert stopped and int(stopped.group(1)) >= 1, flat[-2000:]
        assert re.search(rf"(?m)^\s*{pane}\s+sleep 4242", said.replace("\r", "")), flat[-2000:]
        kill = re.search(r"To stop them: kill ([\d ]+)", flat)
        assert kill and str(pane) in kill.group(1).split(), flat[-2000:]
        assert "~/.bashrc" in flat and "apps you opened yourself" in flat
        assert alive(pane) and alive(started[-1])  # listed, never killed on its own

        journal = [json.loads(x) for x in customer.journal.read_text().splitlines()]
        report = [e for e in journal if e["event"] == "after_session"]
        assert report and pane in [p["pid"] for p in report[-1]["escaped"]]
        assert "~/.bashrc" in [c["what"] for c in report[-1]["changed"]]

        # the next start warns before it shows a code
        again = customer_with_secrets(site, tmp_path, monkeypatch)
        again.child.expect(r"Session code: ")
        before = again.child.before or ""
        assert re.search(rf"still running.*\b{pane}\b", re.sub(r"\s+", " ", before)), before
        assert re.search(rf"kill [\d ]*\b{pane}\b", before), before
        assert alive(pane)
    finally:
        if again is not None:
            again.close()
        customer.close()
        await tech.close()


async def test_the_next_start_does_not_mistake_a_reused_pid(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A listed PID whose process has ended and whose number now belongs to another
    # process (different start time) is not reported as still running.
    state = tmp_path / "state" / "tether"
    state.mkdir(parents=True)
    me = os.getpid()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (state / "escaped.json").write_text(json.dumps({"boot": boot, "processes": [
        {"pid": me, "start": 1, "command": "sleep 4242"}]}))
    customer = customer_with_secrets(site, tmp_path, monkeypatch)
    try:
        customer.child.expect(r"Session code: ")
        assert "still running" not in (customer.child.before or "")
    except pexpect.TIMEOUT:
        raise AssertionError(customer.child.before) from None
    finally:
        customer.close()
