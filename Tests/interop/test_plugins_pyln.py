"""`lnrr record --plugin`: plugins in Core Lightning's plugin protocol, written with pyln-client.

The plugins here are pyln-client `Plugin`s (Core Lightning's own plugin library) and the nodes on
both sides are pyln-proto: what a plugin decides is checked by what the other pyln-proto node
receives, never by lnrr's own account alone.
"""
import json
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings, show_json

EXAMPLE = REPO / "tools" / "python" / "examples" / "tag_router.py"

# A Core Lightning plugin as its developers write one: the custommsg hook, unchanged.
CLN_PLUGIN = r'''
import json
from pyln.client import Plugin

plugin = Plugin()
plugin.add_option("seen-file", None, "where to write what the hook saw")


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    with open(plugin.get_option("seen-file"), "a") as f:
        f.write(json.dumps({"peer_id": peer_id, "payload": payload, "extra": sorted(kwargs)}) + "\n")
    return {"result": "continue"}


plugin.run()
'''


def python_plugin(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(source)
    return f"{sys.executable} {path}"


def start(lnrr, procs, keys, tmp_path, *extra):
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", *extra)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    return proxy, a, b


def ctl(lnrr, socket, *args):
    r = run(lnrr, "ctl", "--socket", socket, *args)
    return json.loads(r.stdout)


def test_pyln_client_custommsg_plugin_runs_unchanged(lnrr, keys, procs, tmp_path):
    seen = tmp_path / "seen.jsonl"
    plugin = python_plugin(tmp_path, "cln_plugin.py", CLN_PLUGIN)
    proxy, a, b = start(lnrr, procs, keys, tmp_path, "--plugin", plugin, "--plugin-option", f"seen-file={seen}")
    a.send_message(msg(32769, b"hello"))
    assert b.read_message() == msg(32769, b"hello")          # {"result": "continue"} honoured
    b.send_message(msg(32771, b"back"))
    assert a.read_message() == msg(32771, b"back")
    a.send_message(msg(18, b"\x00\x04\x00\x00"))              # not a custom message: not offered to custommsg
    assert b.read_message() == msg(18, b"\x00\x04\x00\x00")
    lines = [json.loads(l) for l in seen.read_text().splitlines()]
    # Core Lightning's parameters exactly: the sending peer's id and the hex of type + payload.
    assert lines == [
        {"peer_id": keys("a").node_id, "payload": msg(32769, b"hello").hex(), "extra": []},
        {"peer_id": keys("b").node_id, "payload": msg(32771, b"back").hex(), "extra": []},
    ]
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    hooks = [l for l in lines if l.get("event") == "hook"]
    assert [h["result"] for h in hooks] == ["continue", "continue"]


def test_example_plugin_verdicts_decide_what_the_peer_receives(lnrr, keys, procs, tmp_path):
    sock = tmp_path / "ctl.sock"
    rules = tmp_path / "rules.yaml"     # rules run first; their actions are notified (lnrr_rule)
    rules.write_text('rules:\n  - {name: no-pings, match: {type: ping}, action: drop}\n')
    proxy, a, b = start(lnrr, procs, keys, tmp_path, "--plugin", f"{sys.executable} {EXAMPLE}", "--control", sock,
                        "--rules", rules)
    a.send_message(msg(18, b"\x00\x01\x00\x00"))              # dropped by the rule: never offered to the plugin
    a.send_message(msg(32769, b"\x01keep"))
    a.send_message(msg(32769, b"\x02gone"))
    a.send_message(msg(32769, b"\x03abc"))
    a.send_message(msg(32769, b"\x04xy"))
    a.send_message(msg(32769, b"\x05mid"))
    a.send_message(msg(32769, b"\x06end"))
    a.send_message(msg(32769, b"\x01last"))
    got = [b.read_message() for _ in range(8)]
    assert got == [
        msg(32769, b"\x01keep"),
        # \x02 dropped
        msg(32771, b"cba"),                                   # replace by hex
        msg(18, b"\x00\x04\x00\x02xy"),                       # replace by name + fields: ping
        msg(32773, b"before"), msg(32769, b"\x05mid"),        # inject before
        msg(32769, b"\x06end"), msg(32773, b"after"),         # inject after
        msg(32769, b"\x01last"),
    ]
    b.send_message(msg(32769, b"\x02back"))                   # the other direction too
    b.send_message(msg(32769, b"\x01back"))
    assert a.read_message() == msg(32769, b"\x01back")
    # The plugin's RPC method is called through the control socket like a built-in one.
    stats = ctl(lnrr, sock, "tagstats")
    assert stats["messages"] == 9 and stats["by_tag"]["2"] == 2 and stats["sessions_started"] == 1
    assert stats["live_sessions"] == 1           # the plugin called lnrr back through init's rpc-file
    assert stats["phases"] == ["connection: init -> opening"]          # the lnrr_phase notification (after both inits)
    assert len(stats["rules"]) == 1 and "no-pings" in stats["rules"][0]
    assert stats["sessions_ended"] == 0
    a.connection.close()
    deadline = time.monotonic() + 10
    while ctl(lnrr, sock, "tagstats")["sessions_ended"] != 1:
        assert time.monotonic() < deadline, "no lnrr_session_end notification"
        time.sleep(0.1)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    results = [h["result"] for h in lines if h.get("event") == "hook"]
    assert results == ["continue", "drop", "replace", "replace", "continue", "continue", "continue", "drop", "continue"]
    injected = [l["hex"] for l in lines if "delivery: injected" in l.get("comments", [])]
    assert injected == [msg(32773, b"before").hex(), msg(32773, b"after").hex()]


# Answers out of order on purpose (pyln-client's async_hook): lnrr must still release in order.
ORDER_PLUGIN = r'''
import threading, time
from pyln.client import Plugin

plugin = Plugin()


@plugin.async_hook("lnrr_message")
def on_message(request, payload, **kwargs):
    n = int(payload[-8:], 16)
    if n % 3 == 0:
        threading.Timer(0.002 * (n % 7), request.set_result, args=({"result": "continue"},)).start()
    else:
        request.set_result({"result": "continue"})


plugin.run()
'''


def test_order_kept_with_1000_messages_in_flight_each_way(lnrr, keys, procs, tmp_path):
    plugin = python_plugin(tmp_path, "order.py", ORDER_PLUGIN)
    proxy, a, b = start(lnrr, procs, keys, tmp_path, "--plugin", plugin, "--hook-timeout", "30000", "--no-recording")
    n = 1000
    out_a = [msg(32769 + 2 * (i % 5), i.to_bytes(4, "big")) for i in range(n)]
    out_b = [msg(18 if i % 4 == 0 else 32771, b"\x00\x00" + i.to_bytes(4, "big")) for i in range(n)]
    received = {"a": [], "b": []}

    def reader(conn, key):
        for _ in range(n):
            received[key].append(conn.read_message())

    threads = [threading.Thread(target=reader, args=(b, "b")), threading.Thread(target=reader, args=(a, "a"))]
    for t in threads:
        t.start()
    writers = [threading.Thread(target=lambda: [a.send_message(m) for m in out_a]),
               threading.Thread(target=lambda: [b.send_message(m) for m in out_b])]
    for t in writers:
        t.start()
    for t in writers + threads:
        t.join(timeout=120)
        assert not t.is_alive(), "traffic stalled"
    assert received["b"] == out_a
    assert received["a"] == out_b
    proxy.proc.stop()


CRASH_PLUGIN = r'''
import os
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    if payload.endswith("dead"):
        os._exit(3)
    return {"result": "drop"}


plugin.run()
'''


def test_plugin_crash_mid_session_traffic_continues_without_it(lnrr, keys, procs, tmp_path):
    plugin = python_plugin(tmp_path, "crash.py", CRASH_PLUGIN)
    proxy, a, b = start(lnrr, procs, keys, tmp_path, "--plugin", plugin)
    a.send_message(msg(32769, b"\x01"))                      # the plugin drops it
    a.send_message(msg(18, b"\x00\x01\x00\x00"))
    assert b.read_message() == msg(18, b"\x00\x01\x00\x00")
    a.send_message(msg(32769, b"\xde\xad"))                  # the plugin dies on this one
    a.send_message(msg(32769, b"\x02"))
    assert b.read_message() == msg(32769, b"\xde\xad")      # the default verdict: continue
    assert b.read_message() == msg(32769, b"\x02")          # and from now on as without the plugin
    proxy.proc.wait_lines(lambda _: "traffic continues without it" in proxy.proc.stderr_text(), timeout=10)
    assert "exit status 3" in proxy.proc.stderr_text() or "status 3" in proxy.proc.stderr_text()
    b.send_message(msg(32771, b"x"))
    assert a.read_message() == msg(32771, b"x")
    proxy.stop()


HANG_PLUGIN = r'''
import time
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    if payload.endswith("99"):
        time.sleep(3600)
    return {"result": "drop"}


plugin.run()
'''


def test_plugin_that_never_answers_hits_the_hook_timeout(lnrr, keys, procs, tmp_path):
    plugin = python_plugin(tmp_path, "hang.py", HANG_PLUGIN)
    proxy, a, b = start(lnrr, procs, keys, tmp_path, "--plugin", plugin, "--hook-timeout", "700")
    a.send_message(msg(32769, b"\x01"))                      # dropped by the plugin
    a.send_message(msg(32769, b"\x99"))                      # the plugin hangs here
    a.send_message(msg(18, b"\x00\x01\x00\x00"))             # waits behind it, in order
    a.send_message(msg(32769, b"\x02"))                      # asked while it hangs: times out too
    start_time = time.monotonic()
    assert b.read_message() == msg(32769, b"\x99")
    assert b.read_message() == msg(18, b"\x00\x01\x00\x00")
    assert b.read_message() == msg(32769, b"\x02")
    assert time.monotonic() - start_time < 10
    assert "timed out after 700 ms" in proxy.proc.stderr_text()
    proxy.stop()                                            # and lnrr still stops cleanly


GARBAGE_PLUGIN = r'''
import os
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    if payload.endswith("66"):
        os.write(1, b"this is not json\n")
    return {"result": "drop"}


plugin.run()
'''


def test_plugin_that_writes_garbage_is_stopped_and_traffic_continues(lnrr, keys, procs, tmp_path):
    plugin = python_plugin(tmp_path, "garbage.py", GARBAGE_PLUGIN)
    proxy, a, b = start(lnrr, procs, keys, tmp_path, "--plugin", plugin)
    a.send_message(msg(32769, b"\x66"))
    a.send_message(msg(32769, b"\x67"))
    assert b.read_message() == msg(32769, b"\x66")
    assert b.read_message() == msg(32769, b"\x67")
    proxy.proc.wait_lines(lambda _: "traffic continues without it" in proxy.proc.stderr_text(), timeout=10)
    text = proxy.proc.stderr_text()
    assert "not a JSON-RPC object" in text and "this is not json" in text
    proxy.stop()


def test_missing_or_broken_plugins_are_reported_at_startup(lnrr, keys, tmp_path):
    keys("b")
    base = [lnrr, "record", "--listen", "127.0.0.1:0", "--upstream", f"{keys('b').node_id}@127.0.0.1:1",
            "--keys", keys.dir, "--no-recording"]
    r = run(*base, "--plugin", "/nonexistent/plugin.py", check=False, timeout=60)
    assert r.returncode == 2
    assert "plugin /nonexistent/plugin.py failed to start" in r.stderr and "not found" in r.stderr
    broken = python_plugin(tmp_path, "broken.py", "raise SystemExit('cannot start: no config')\n")
    r = run(*base, "--plugin", broken, check=False, timeout=60)
    assert r.returncode == 2 and "getmanifest" in r.stderr and "cannot start: no config" in r.stderr
    unknown = python_plugin(tmp_path, "unknown.py", "from pyln.client import Plugin\np = Plugin()\n"
                            "@p.hook('htlc_accepted')\ndef h(**kw):\n    return {'result': 'continue'}\np.run()\n")
    r = run(*base, "--plugin", unknown, check=False, timeout=60)
    assert r.returncode == 2 and "hook 'htlc_accepted' is not one lnrr offers" in r.stderr
