"""The control socket of `lnrr record --control`, driven with `lnrr ctl` and with pyln-client (Core
Lightning's own RPC client) while pyln-proto nodes talk."""
import json
import os
import socket
import stat
import subprocess
import threading
import time

import pytest
from pyln.client import LightningRpc, RpcError
from pyln.client.lightning import UnixDomainSocketRpc

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
    assert r.returncode == 2 and "typo" in r.stderr  # a bad rule is bad input
    ctl(lnrr, sock, "delrule", "name=no-custom")
    a.send_message(msg(32769, b"passes"))
    assert b.read_message() == msg(32769, b"passes")

    # Events arrived while traffic flowed.
    events.wait_lines(lambda lines: any('"rule"' in l and "dropped" in l for l in lines) and any('"custommsg"' in l for l in lines))

    ctl(lnrr, sock, "disconnect", "session=1")
    events.wait_lines(lambda lines: any('"session-end"' in l for l in lines))
    time.sleep(0.3)
    r = ctl(lnrr, sock, "sendcustommsg", "session=1", "direction=a->b", "msg=8001", check=False)
    assert r.returncode == 1 and ("no session 1" in r.stderr or "not connected" in r.stderr), r.stderr
    # A wrong method is bad usage (exit 2), with the nearest method name.
    r = ctl(lnrr, sock, "listsesions", check=False)
    assert r.returncode == 2 and "method not found" in r.stderr and "did you mean 'listsessions'" in r.stderr, r.stderr


def test_ctl_without_a_proxy(lnrr, tmp_path):
    r = run(lnrr, "ctl", "--socket", tmp_path / "none.sock", "listsessions", check=False)
    assert r.returncode == 2 and "cannot connect" in r.stderr


# --- pyln-client, Core Lightning's own RPC client, drives the control socket (issue #15) ---------

@pytest.fixture(autouse=True)
def socket_timeout():
    """pyln-client sets no timeout: an lnrr that never answers must fail the test, not hang it."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    yield
    socket.setdefaulttimeout(previous)


def rpc_error(call):
    """The JSON-RPC error object of a call that must fail."""
    with pytest.raises(RpcError) as caught:
        call()
    return caught.value.error


def test_pyln_client_calls_every_method(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    sock = tmp_path / "ctl.sock"
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--control", sock)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT); b.read_message()
    b.send_message(INIT); a.read_message()
    a_id, b_id = keys("a").node_id, keys("b").node_id

    # LightningRpc sends string ids ("pytest:listsessions#1"), no newline, and reads up to "\n\n".
    rpc = LightningRpc(str(sock))
    sessions = rpc.listsessions()["sessions"]
    assert [(s["id"], s["node_a"], s["node_b"]) for s in sessions] == [(1, a_id, b_id)]
    assert rpc.call("listsessions", {})["sessions"][0]["connected"] is True
    # Another caller name, and a reply filter as Core Lightning applies it.
    named = UnixDomainSocketRpc(str(sock), caller_name="pyln")
    with named.reply_filter({"sessions": [{"id": True, "node_b": True}]}):
        assert named.call("listsessions") == {"sessions": [{"id": 1, "node_b": b_id}]}

    # sendcustommsg exactly as against lightningd: LightningRpc's own method (node_id, msg).
    assert rpc.sendcustommsg(b_id, "8001cafe")["direction"] == "a->b"
    assert b.read_message() == bytes.fromhex("8001cafe")
    rpc.call("sendcustommsg", {"node_id": a_id, "msg": "8003beef"})
    assert a.read_message() == bytes.fromhex("8003beef")
    rpc.call("sendcustommsg", [b_id, "8005aa"])  # positional, in Core Lightning's order
    assert b.read_message() == bytes.fromhex("8005aa")
    rpc.call("sendcustommsg", {"session": 1, "direction": "b2a", "msg": "8007"})
    assert a.read_message() == bytes.fromhex("8007")

    # Distinct error codes (docs/rules.md), messages a user can act on.
    e = rpc_error(lambda: rpc.sendcustommsg(keys("stranger").node_id, "8001"))
    assert e["code"] == 1001 and "No such peer" in e["message"]
    e = rpc_error(lambda: rpc.sendcustommsg(b_id, "00120000"))
    assert e["code"] == 1003 and "type 18" in e["message"]
    e = rpc_error(lambda: rpc.call("sendcustommsg", {"node_id": "02abcd", "msg": "8001"}))
    assert e["code"] == -32602 and "malformed" in e["message"] and "66 hex" in e["message"], e
    e = rpc_error(lambda: rpc.call("sendcustommsg", {"nodeid": b_id, "msg": "8001"}))
    assert e["code"] == -32602 and "unknown parameter 'nodeid'" in e["message"] and "did you mean 'node_id'" in e["message"], e
    e = rpc_error(lambda: rpc.call("sendcustommsg", {"session": 1, "direction": "sideways", "msg": "8001"}))
    assert e["code"] == -32602 and "a2b" in e["message"], e
    e = rpc_error(lambda: rpc.call("listsesions"))
    assert e["code"] == -32601 and "did you mean 'listsessions'" in e["message"], e
    e = rpc_error(lambda: rpc.call("inject", {"session": 99, "direction": "a2b", "msg": "8001"}))
    assert e["code"] == 1001 and "no session 99" in e["message"], e

    # inject by name, towards a.
    assert rpc.call("inject", {"session": 1, "direction": "b->a", "name": "ping", "fields": {"num_pong_bytes": 3}})["hex"] == "0012000300" + "00"
    assert a.read_message() == bytes.fromhex("001200030000")

    # Rules at run time.
    rule = '{"name": "no-custom", "match": {"custom": true}, "action": "drop"}'
    assert rpc.call("addrule", {"rule": rule})["added"] == "no-custom"
    assert rpc_error(lambda: rpc.call("addrule", [rule]))["code"] == 1004
    assert [r["name"] for r in rpc.call("listrules")["rules"]] == ["no-custom"]
    e = rpc_error(lambda: rpc.call("addrule", {"rule": '{"match": {"tpye": "ping"}}'}))
    assert e["code"] == -32602 and "did you mean type" in e["message"], e

    # subscribe with count: one answer carrying the next events, for one-call clients.
    got = {}
    listener = threading.Thread(target=lambda: got.update(rpc.call("subscribe", {"count": 1, "timeout": 20000})))
    listener.start()
    deadline = time.monotonic() + 20
    while listener.is_alive() and time.monotonic() < deadline:
        # The subscription starts when the call arrives, which this thread cannot see: send until
        # the answer comes (each dropped message is an event).
        a.send_message(msg(32769, b"dropped"))
        listener.join(0.3)
    assert not listener.is_alive() and got["complete"] is True, got
    assert got["events"][0]["event"] in ("custommsg", "message", "rule") and got["events"][0]["session"] == 1, got
    e = rpc_error(lambda: rpc.call("subscribe", {"count": 0}))
    assert e["code"] == -32602

    assert rpc.call("delrule", {"name": "no-custom"}) == {"deleted": "no-custom"}
    e = rpc_error(lambda: rpc.call("delrule", {"name": "no-custom"}))
    assert e["code"] == 1005, e
    a.send_message(msg(32769, b"passes"))
    assert b.read_message() == msg(32769, b"passes")

    # pyln-client's notify() first sends Core Lightning's `notifications` opt-in; then the events a
    # `subscribe` collects also arrive one by one, as `message` notifications, during the call.
    seen = []
    with rpc.notify(lambda **kw: seen.append(json.loads(kw["message"]))):
        assert rpc.listsessions()["sessions"][0]["id"] == 1
        got = {}
        listener = threading.Thread(target=lambda: got.update(rpc.call("subscribe", {"count": 2, "timeout": 20000})))
        listener.start()
        deadline = time.monotonic() + 20
        while listener.is_alive() and time.monotonic() < deadline:
            a.send_message(msg(32771, b"seen"))
            listener.join(0.3)
    assert got["complete"] is True and len(got["events"]) == 2, got
    assert seen == got["events"], (seen, got)
    while True:  # b reads what the loop above sent
        b.connection.settimeout(1)
        try:
            assert b.read_message() == msg(32771, b"seen")
        except (socket.timeout, TimeoutError):
            break
    b.connection.settimeout(30)

    # LightningRpc.disconnect(peer_id) sends Core Lightning's {"id": ..., "force": false}.
    assert rpc.disconnect(b_id)["session"] == 1
    deadline = time.monotonic() + 20
    while rpc.listsessions()["sessions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rpc.listsessions()["sessions"] == []
    e = rpc_error(lambda: rpc.sendcustommsg(b_id, "8001"))
    assert e["code"] == 1001


def raw_exchange(sock_path, payload: bytes, answers: int, timeout=20.0) -> list[dict]:
    """Writes `payload` as is and reads `answers` objects, each of which must end with a blank line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(payload)
        buf = b""
        while buf.count(b"\n\n") < answers:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {buf!r}"
            buf += chunk
    parts = buf.split(b"\n\n")
    assert parts[-1] == b"", buf  # nothing but whole answers
    return [json.loads(p) for p in parts[:-1]]


def test_control_socket_framing_and_codes(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    sock = tmp_path / "ctl.sock"
    upstream = UpstreamNode(keys("b"))
    Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--control", sock)

    # Two requests back to back without newlines, string and number ids, answered in order here.
    got = raw_exchange(sock, b'{"jsonrpc":"2.0","id":"x:listrules#1","method":"listrules"}'
                             b'{"jsonrpc":"2.0","id":7,"method":"listsessions","params":[]}', 2)
    assert {g["id"] for g in got} == {"x:listrules#1", 7}
    assert all("result" in g for g in got)
    # 200 pipelined requests (past the 16 a connection may have running): every one answered.
    many = b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"listsessions"}\n' % i for i in range(200))
    got = raw_exchange(sock, many, 200)
    assert sorted(g["id"] for g in got) == list(range(200)) and all(g["result"]["sessions"] == [] for g in got)
    # Newline-separated requests, one split across lines (pretty-printed), work too.
    got = raw_exchange(sock, b'{"jsonrpc":"2.0","id":1,\n "method":"listrules"}\n', 1)
    assert got[0]["result"] == {"rules": []}

    cases = [
        (b'not json at all\n', -32700),
        (b'{"jsonrpc":"2.0","id":2,"method":}', -32700),
        (b'[1,2]', -32600),
        (b'{"jsonrpc":"2.0","id":3}', -32600),
        (b'{"jsonrpc":"2.0","id":4,"method":"listrules","params":5}', -32600),
        (b'{"jsonrpc":"2.0","id":5,"method":"nosuch"}', -32601),
        (b'{"jsonrpc":"2.0","id":6,"method":"listrules","params":{"x":1}}', -32602),
        (b'{"jsonrpc":"2.0","id":7,"method":"listsessions","params":[1]}', -32602),
        (b'{"jsonrpc":"2.0","id":8,"method":"delrule","params":{"name":"none"}}', 1005),
        (b'{"jsonrpc":"2.0","id":9,"method":"disconnect","params":{"session":3}}', 1001),
    ]
    for payload, code in cases:
        answer = raw_exchange(sock, payload, 1)[0]
        assert answer["error"]["code"] == code, (payload, answer)
        assert answer["error"]["message"], answer

    # A request that never ends is cut at 1 MiB: one answer, then the connection closes.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(sock))
        try:
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"listrules","params":{"x":"' + b"x" * (1 << 20) + b'"')
        except (BrokenPipeError, ConnectionResetError):
            pass  # lnrr may close before the last bytes are written
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf.split(b"\n\n")[0])
    assert answer["error"]["code"] == -32600 and "1 MiB" in answer["error"]["message"], answer
    # The proxy still serves.
    assert raw_exchange(sock, b'{"jsonrpc":"2.0","id":1,"method":"listrules"}', 1)[0]["result"] == {"rules": []}
