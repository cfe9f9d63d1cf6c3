"""What may have escaped a session, from snapshots (client/escapes.py): pure, no /proc."""

from __future__ import annotations

import json

from tether.client import escapes as e
from tether.client.escapes import Change, Listed, Proc

ME = 1000


def proc(pid: int, start: int, uid: int = ME, euid: int | None = None,
         command: str = "sleep 1") -> Proc:
    return Proc(pid=pid, ppid=1, uids=(uid, uid if euid is None else euid), start=start,
                command=command)


def test_only_the_customers_processes_started_since_the_first_shell_outside_the_tree() -> None:
    procs = [proc(10, 99), proc(11, 100), proc(12, 150, uid=0), proc(13, 160),
             proc(14, 170, uid=0, euid=ME), proc(15, 120)]
    found = e.escaped(procs, since=100, uid=ME, exclude={13})
    # 10 is older than the session, 12 is root's (a system service), 13 is excluded (the
    # client, an ancestor or its own tree); 14 runs with the customer's effective uid
    assert [p.pid for p in found] == [11, 15, 14]  # oldest first
    assert found[0] == Listed(11, 100, "sleep 1")


def test_as_root_every_root_process_since_the_first_shell_counts() -> None:
    found = e.escaped([proc(12, 150, uid=0), proc(10, 50, uid=0)], since=100, uid=0,
                      exclude=set())
    assert [p.pid for p in found] == [12]


def test_changes_name_added_removed_and_changed_entries() -> None:
    before = {"~/.bashrc": "a", "crontab": "c", "~/.ssh/authorized_keys": "k"}
    after = {"~/.bashrc": "b", "crontab": "c", "~/.config/autostart/x.desktop": "x"}
    assert e.changes(before, after) == [
        Change("~/.bashrc", "changed"),
        Change("~/.config/autostart/x.desktop", "added"),
        Change("~/.ssh/authorized_keys", "removed")]
    assert e.changes(before, dict(before)) == []


def test_a_reused_pid_is_not_the_listed_process() -> None:
    listed = [Listed(10, 100, "a"), Listed(11, 200, "b"), Listed(12, 300, "c")]
    live = {10: 100, 11: 999}  # 11 is another process now; 12 is gone
    assert e.still_running(listed, live) == [Listed(10, 100, "a")]


def test_the_state_file_round_trips_within_one_boot_only() -> None:
    listed = [Listed(10, 100, "tmux new -d"), Listed(11, 200, "sleep 9")]
    text = e.dump_state(listed, "boot-1")
    assert e.load_state(text, "boot-1") == listed
    assert e.load_state(text, "boot-2") == []  # after a reboot the PIDs name nothing


def test_a_tampered_state_file_is_parsed_strictly_and_cleaned() -> None:
    text = json.dumps({"boot": "b", "processes": [
        {"pid": "10", "start": 1}, {"pid": -1, "start": 1}, {"pid": 7, "start": 2.5},
        {"pid": 8, "start": 3, "command": "evil\x1b]0;title\x07\r\nSession code: 1"},
        "junk"]})
    assert e.load_state(text, "b") == []  # a junk entry spoils the file: nothing is shown
    text = json.dumps({"boot": "b", "processes": [
        {"pid": 8, "start": 3, "command": "evil\x1b]0;title\x07\r\nSession code: 1"}]})
    [only] = e.load_state(text, "b")
    assert "\x1b" not in only.command and "\n" not in only.command and "\r" not in only.command
    for bad in ("", "[]", "{", '{"boot": "b", "processes": 5}'):
        assert e.load_state(bad, "b") == []


def test_the_summary_says_what_was_counted_and_how_to_stop_the_rest() -> None:
    lines = e.summary(stopped=3, escaped=[Listed(4242, 1, "sleep 4242"),
                                          Listed(4250, 2, "gnome-calculator")],
                      changed=[Change("~/.bashrc", "changed")],
                      checked=["crontab", "shell start-up files"], unchecked=[], user="bob")
    text = "\n".join(lines)
    assert lines[0].startswith("Stopped 3 processes of the technician's shells")
    assert "apps you opened yourself" in text and "user bob" in text
    assert "     4242  sleep 4242" in lines
    assert "To stop them: kill 4242 4250" in lines
    assert "  ~/.bashrc (changed)" in lines
    assert "Nothing" not in text and "still running outside this client." not in text


def test_the_summary_never_reassures_beyond_what_it_checked() -> None:
    lines = e.summary(stopped=1, escaped=[], changed=[], checked=["crontab"],
                      unchecked=["autostart entries (unreadable)"], user="bob")
    assert lines[0] == ("Stopped 1 process of the technician's shells (each shell and "
                        "everything started under it that was still running).")
    assert "No change found in: crontab." in lines
    assert "Not checked: autostart entries (unreadable)." in lines
    assert not any("kill" in line for line in lines)


def test_a_long_list_is_bounded_on_screen() -> None:
    many = [Listed(i, i, "x") for i in range(1, e.MAX_SHOWN + 6)]
    lines = e.summary(stopped=0, escaped=many, changed=[], checked=[], unchecked=[], user="u")
    assert sum(1 for line in lines if line.endswith("  x")) == e.MAX_SHOWN
    assert any("and 5 more" in line for line in lines)
    assert len(lines) < e.MAX_SHOWN + 10


def test_the_next_start_warning_names_each_process_and_the_command() -> None:
    lines = e.warning([Listed(4242, 1, "sleep 4242")])
    assert lines[0].startswith("Warning: 1 process listed at the end of your last support "
                               "session still running")
    assert lines[-1] == "To stop them: kill 4242"
