"""The control socket of `lnrr record --control`, driven with `lnrr ctl` while pyln-proto nodes talk."""
import json
import os
import stat
import subprocess
import time

from conftest import run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg


def ctl(lnrr, sock, *args, check=True):
    r = run(lnrr, "ctl", "--socket", sock, *args, check=False)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def test_control_socket_methods(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    sock = tmp_path / "ctl.sock"
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--control", sock)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT); b.read_message()
    b.send_message(INIT); a.read_message()

    events = procs(lnrr, "ctl", "--socket", sock, "subscribe")
    events.wait_lines(lambda lines: any("subscribed" in l for l in lines))

    sessions = json.loads(ctl(lnrr, sock, "listsessions").stdout)["sessions"]
    assert len(sessions) == 1
    s = sessions[0]
    assert s["node_a"] == keys("a").node_id and s["node_b"] == keys("b").node_id and s["connected"] is True
    assert s["messages_a_to_b"] == 1 and s["phase"] == "opening"

    # sendcustommsg mirrors CLN: to node_id; refuses BOLT types unless force; unknown peers are errors.
    r = ctl(lnrr, sock, "sendcustommsg", f"node_id={keys('b').node_id}", "msg=8001cafe")
    assert json.loads(r.stdout)["direction"] == "a->b"
    assert b.read_message() == bytes.fromhex("8001cafe")
    ctl(lnrr, sock, "sendcustommsg", f"node_id={keys('a').node_id}", "msg=8003beef")
    assert a.read_message() == bytes.fromhex("8003beef")
    r = ctl(lnrr, sock, "sendcustommsg", f"node_id={keys('b').node_id}", "msg=00120000", check=False)
    assert r.returncode == 1 and "Cannot send messages of type 18" in r.stderr
    ctl(lnrr, sock, "sendcustommsg", f"node_id={keys('b').node_id}", "msg=001200000000", "force=true")
    assert b.read_message() == bytes.fromhex("001200000000")
    r = ctl(lnrr, sock, "sendcustommsg", f"node_id={keys('stranger').node_id}", "msg=8001", check=False)
    assert r.returncode == 1 and "No such peer" in r.stderr

    # inject by name and fields, towards a.
    ctl(lnrr, sock, "inject", "session=1", "direction=b->a", "name=ping", 'fields={"num_pong_bytes": 3}')
    assert a.read_message() == bytes.fromhex("0012000300" + "00")

    # Rules at run time.
    ctl(lnrr, sock, "addrule", 'rule={"name": "no-custom", "match": {"custom": true}, "action": "drop"}')
    assert [r["name"] for r in json.loads(ctl(lnrr, sock, "listrules").stdout)["rules"]] == ["no-custom"]
    a.send_message(msg(32769, b"dropped"))
    a.send_message(msg(18, b"\x00\x00\x00\x00"))
    assert b.read_message()[:2] == b"\x00\x12"
    r = ctl(lnrr, sock, "addrule", 'rule={"match": {"typo": 1}}', check=False)
    assert r.returncode == 1 and "typo" in r.stderr
    ctl(lnrr, sock, "delrule", "name=no-custom")
    a.send_message(msg(32769, b"passes"))
    assert b.read_message() == msg(32769, b"passes")

    # Events arrived while traffic flowed.
    events.wait_lines(lambda lines: any('"rule"' in l and "dropped" in l for l in lines) and any('"custommsg"' in l for l in lines))

    ctl(lnrr, sock, "disconnect", "session=1")
    events.wait_lines(lambda lines: any('"session-end"' in l for l in lines))
    time.sleep(0.3)
    r = ctl(lnrr, sock, "sendcustommsg", "session=1", "direction=a->b", "msg=8001", check=False)
    assert r.returncode == 1 and ("No such peer" in r.stderr or "not connected" in r.stderr)
    r = ctl(lnrr, sock, "nosuchmethod", check=False)
    assert r.returncode == 1 and "method not found" in r.stderr


def test_ctl_without_a_proxy(lnrr, tmp_path):
    r = run(lnrr, "ctl", "--socket", tmp_path / "none.sock", "listsessions", check=False)
    assert r.returncode == 2 and "cannot connect" in r.stderr
