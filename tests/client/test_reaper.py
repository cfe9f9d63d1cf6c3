"""Nothing the technician started outlives the session (client/reaper.py).

``become_subreaper`` changes the calling process for good and ``kill_all``
kills every descendant, so each test runs them in a fresh Python process,
never in the test runner itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.helpers import T

# Starts a shell that puts `sleep` in a new session with setsid and exits at once:
# the orphan is re-parented to the nearest subreaper, or to init if there is none.
SCRIPT = r"""
import json, os, subprocess, sys, time
from tether.client import reaper

subreaper = reaper.become_subreaper() if sys.argv[1] == "yes" else None
sh = subprocess.Popen(["sh", "-c", "setsid sleep 1000 & echo $!"], stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
pid = int(sh.stdout.readline())  # not read to EOF: sleep holds the pipe open
sh.stdout.close()
sh.wait()  # the shell has exited: its orphan already has its new parent

def cmdline(p):
    with open(f"/proc/{p}/cmdline", "rb") as f:
        return f.read()

deadline = time.monotonic() + float(sys.argv[2])
while cmdline(pid) != b"sleep\x001000\x00" and time.monotonic() < deadline:
    time.sleep(0.005)  # setsid has not yet called setsid() and exec'd sleep

def ppid(p):
    with open(f"/proc/{p}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rfind(b")") + 2:].split()[1])

result = {"subreaper": subreaper, "pid": pid, "adopted": ppid(pid) == os.getpid(),
          "new_session": os.getsid(pid) != os.getsid(0), "descendants": reaper.descendants()}
if sys.argv[1] == "yes":
    done = reaper.kill_all()
    result["survivors"], result["stopped"] = list(done.survivors), list(done.stopped)
    result["gone"] = not os.path.exists(f"/proc/{pid}")
print(json.dumps(result))
"""


def run(subreaper: bool) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "yes" if subreaper else "no", str(T)],
                          capture_output=True, text=True, timeout=3 * T)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_setsid_process_is_adopted_and_killed_by_kill_all() -> None:
    result = run(subreaper=True)
    pid = int(result["pid"])  # type: ignore[call-overload]
    try:
        assert result["subreaper"] is True
        assert result["new_session"] is True  # it really left the shell's session
        assert result["adopted"] is True
        assert pid in result["descendants"]  # type: ignore[operator]
        assert result["survivors"] == []
        assert pid in result["stopped"]  # type: ignore[operator]
        assert result["gone"] is True
    finally:
        kill_if_alive(pid)


def test_without_the_subreaper_the_orphan_escapes() -> None:
    # the control: this is what become_subreaper prevents
    result = run(subreaper=False)
    pid = int(result["pid"])  # type: ignore[call-overload]
    try:
        assert result["adopted"] is False
        assert pid not in result["descendants"]  # type: ignore[operator]
    finally:
        kill_if_alive(pid)


def test_descendants_and_kill_all_in_a_process_tree() -> None:
    code = r"""
import json, os, subprocess, time
from tether.client import reaper
reaper.become_subreaper()
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
# a chain: sh -> sh -> sleep, plus a direct child
chain = subprocess.Popen(["sh", "-c", "sh -c 'sleep 1000' & wait"], **quiet)
direct = subprocess.Popen(["sleep", "1000"], **quiet)

def cmdline(p):
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""

deadline = time.monotonic() + 5
while time.monotonic() < deadline:  # until the grandchild sleep is running
    if b"sleep\x001000\x00" in [cmdline(p) for p in reaper.descendants(chain.pid)]:
        break
    time.sleep(0.01)
before = sorted(reaper.descendants())
done = reaper.kill_all(exclude=lambda p: p == direct.pid)
left, stopped = list(done.survivors), list(done.stopped)
after = sorted(reaper.descendants())
gone = [p for p in before if not os.path.exists(f"/proc/{p}")]
direct.kill()
direct.wait()
print(json.dumps({"before": before, "left": left, "after": after, "gone": gone,
                  "stopped": stopped,
                  "direct": direct.pid, "chain": chain.pid}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=3 * T)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    # the chain's shell, at least its grandchild sleep, and the direct child
    assert len(r["before"]) >= 3 and r["direct"] in r["before"] and r["chain"] in r["before"]
    assert r["left"] == []  # the excluded process is not reported as a survivor
    assert r["after"] == [r["direct"]]
    assert sorted(r["gone"]) == sorted(p for p in r["before"] if p != r["direct"])
    assert r["stopped"] == sorted(r["gone"])  # exactly what was in the tree and is gone
