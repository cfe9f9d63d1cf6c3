"""No session code, password, cookie, CSRF token or relay secret in any log or file."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import PASSWORD


def everything_written(*roots: Path) -> bytes:
    blob = b""
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.suffix != ".pem":
                blob += path.read_bytes()
    return blob


async def test_a_full_session_leaves_no_secret_behind(broker, tech, customer, tmp_path):
    code = customer.code()
    sid = await tech.session_id(code)
    customer.accept_session()
    await tech.wait_for(sid, lambda s: s["state"] == "active", "active")
    cid = await tech.open_shell(sid)
    customer.accept_shell()
    await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "pairing", "pairing")
    status, body = await tech.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
    viewer_secret = body["secret"]
    viewer = await tech.attach(sid, cid)  # uses a second secret; the first is replaced
    await viewer.send("echo done\r")
    await viewer.expect("done\r\n")
    cookie = next(c.value for c in tech.http.cookie_jar if c.key == "__Host-tether")
    # wrong codes and a wrong password are part of the attack surface too
    await tech.redeem(code)
    status, _ = await tech.api("POST", f"/api/sessions/{sid}/end")
    customer.wait_exit()
    broker.stop()
    written = everything_written(broker.data, tmp_path)
    digits = code.replace(" ", "")
    for secret in (PASSWORD, code, digits, f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                   cookie, tech.csrf, viewer_secret):
        assert secret.encode() not in written, f"secret found: {secret[:4]}…"
    assert sid.encode() in written  # the search itself works
