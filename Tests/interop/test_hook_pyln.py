"""`lnrr record --custommsg-hook`: continue, drop, replace, timeout and garbage, order kept."""
import json
import sys
import time

from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings, show_json

HOOK = r'''
import json, sys, time
req = json.loads(sys.stdin.read())
with open(sys.argv[1], "a") as log:
    log.write(json.dumps(req) + "\n")
tag = req["payload"][-2:]
if tag == "02":
    print(json.dumps({"result": "drop"}))
elif tag == "03":
    print(json.dumps({"result": "replace", "payload": "8003beef"}))
elif tag == "04":
    time.sleep(6)
    print(json.dumps({"result": "drop"}))
elif tag == "05":
    print("not json at all")
else:
    print(json.dumps({"result": "continue"}))
'''


def test_custommsg_hook(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    log = tmp_path / "hook.log"
    rules = tmp_path / "rules.yaml"   # rules run first: what they drop never reaches the hook
    rules.write_text('rules:\n  - {name: pre, match: {custom: true, payload_prefix: "06"}, action: drop}\n')
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--rules", rules,
                  "--custommsg-hook", f"{sys.executable} {script} {log}", "--hook-timeout", "2000")
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT

    a.send_message(msg(32769, b"\x01"))                  # continue
    assert b.read_message() == msg(32769, b"\x01")
    a.send_message(msg(32769, b"\x02"))                  # drop
    a.send_message(msg(32769, b"\x03"))                  # replace
    assert b.read_message() == bytes.fromhex("8003beef")
    start = time.monotonic()
    a.send_message(msg(32769, b"\x04"))                  # the hook is too slow: the message continues
    a.send_message(msg(18, b"\x00\x00\x00\x00"))         # and a ping behind it keeps its place
    assert b.read_message() == msg(32769, b"\x04")
    assert 1.9 < time.monotonic() - start < 5
    assert b.read_message()[:2] == b"\x00\x12"
    a.send_message(msg(32769, b"\x06"))                  # dropped by the rule, the hook never asked
    a.send_message(msg(32769, b"\x05"))                  # garbage answer: continues
    assert b.read_message() == msg(32769, b"\x05")
    b.send_message(msg(32771, b"\x02"))                  # the other direction: dropped
    b.send_message(msg(32771, b"\x01"))
    assert a.read_message() == msg(32771, b"\x01")

    requests = [json.loads(l) for l in log.read_text().splitlines()]
    assert not any(r["payload"].endswith("06") for r in requests)
    assert len(requests) == 7
    assert requests[0] == {"peer_id": keys("a").node_id, "direction": "a->b", "payload": "800101"}
    assert requests[-1]["peer_id"] == keys("b").node_id and requests[-1]["direction"] == "b->a"
    assert "timed out" in proxy.proc.stderr_text() and "not {" in proxy.proc.stderr_text()

    # Each verdict is in the recording, naming the message it was about, so replay knows what b got.
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    index = {l["hex"]: l["i"] for l in lines if "hex" in l and "delivery: replacement" not in l.get("comments", [])}
    hooks = {l["message"]: l["result"] for l in lines if l.get("event") == "hook"}
    assert hooks[index[msg(32769, b"\x02").hex()]] == "drop"
    assert hooks[index[msg(32769, b"\x03").hex()]] == "replace"
    assert hooks[index[msg(32769, b"\x04").hex()]].startswith("continue (hook ignored: timed out after 2000 ms")
    assert hooks[index[msg(32769, b"\x01").hex()]] == "continue"
    assert index[msg(32769, b"\x06").hex()] not in hooks                  # the rule dropped it first
    [replacement] = [l for l in lines if l.get("hex") == "8003beef"]
    assert "delivery: replacement" in replacement["comments"]
