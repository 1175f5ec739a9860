"""Rules applied by `lnrr record` between two pyln-proto nodes, seen from the nodes' side."""
import json
import os
import signal
import socket
import struct
import time
from io import BytesIO

import pytest
from pyln.proto.message import Message

from conftest import run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings, show_json
from test_wire_pyln import namespace

CID = "11" * 32


def build(text):
    m = Message.from_str(namespace(), text)
    buf = BytesIO()
    m.write(buf)
    return buf.getvalue()


def session(lnrr, keys, procs, tmp_path, rules_yaml, *extra):
    keys("a"), keys("b")
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml)
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--rules", rules, *extra)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    for conn in (a, b):
        conn.connection.settimeout(5)
    return proxy, a, b, rules


def read_or_none(conn, timeout=0.5):
    conn.connection.settimeout(timeout)
    try:
        return conn.read_message()
    except (socket.timeout, ValueError, OSError):
        return None  # nothing came, or the connection closed
    finally:
        conn.connection.settimeout(5)


def closed(conn, timeout=5):
    conn.connection.settimeout(timeout)
    try:
        conn.read_message()
        return False
    except socket.timeout:
        return False
    except Exception:
        return True


def test_drop_duplicate_replace_inject_mark(lnrr, keys, procs, tmp_path):
    proxy, a, b, _ = session(lnrr, keys, procs, tmp_path, """
rules:
  - name: note
    match: {type: init}
    action: {mark: "init seen"}
  - name: no-first-ping
    match: {type: ping, nth: 1}
    action: drop
  - name: twice
    match: {payload_prefix: "01", custom: true}
    action: duplicate
  - name: swap
    match: {payload_prefix: "02", custom: true}
    action: {replace: {hex: "8003beef"}}
  - name: hello-back
    match: {payload_prefix: "03", custom: true}
    action: {inject: {hex: "8005aa", dir: b->a, when: before}}
""")
    a.send_message(INIT)
    assert b.read_message() == INIT
    a.send_message(msg(18, b"\x00\x01\x00\x00"))        # dropped
    a.send_message(msg(18, b"\x00\x02\x00\x00"))        # the second ping passes
    assert b.read_message() == msg(18, b"\x00\x02\x00\x00")
    a.send_message(msg(32769, b"\x01x"))
    assert b.read_message() == msg(32769, b"\x01x") and b.read_message() == msg(32769, b"\x01x")
    a.send_message(msg(32769, b"\x02y"))
    assert b.read_message() == bytes.fromhex("8003beef")
    a.send_message(msg(32769, b"\x03z"))
    assert a.read_message() == bytes.fromhex("8005aa")     # injected towards a, before the message goes on
    assert b.read_message() == msg(32769, b"\x03z")
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    notes = {l["hex"]: " ".join(l.get("comments", [])) for l in lines if "hex" in l}
    assert 'rule "note": init seen' in notes[INIT.hex()]
    assert 'rule "no-first-ping": dropped' in notes[msg(18, b"\x00\x01\x00\x00").hex()]
    assert "injected by lnrr" in notes["8005aa"]
    # What each receiver got, in the fixed form replay reads (docs/recording-format.md).
    assert "delivery: none" in notes[msg(18, b"\x00\x01\x00\x00").hex()]
    assert "delivery: twice" in notes[msg(32769, b"\x01x").hex()]
    assert "delivery: replaced" in notes[msg(32769, b"\x02y").hex()]
    order = [l["hex"] for l in lines if "hex" in l]
    swapped = order.index(msg(32769, b"\x02y").hex())
    assert order[swapped + 1] == "8003beef" and f"replacement for #{swapped}" in notes["8003beef"]
    assert "delivery: injected" in notes["8005aa"]
    assert order.index("8005aa") < order.index(msg(32769, b"\x03z").hex())   # it went first, so it is recorded first
    meta = json.loads(run(lnrr, "show", "--json", "--metadata", path).stdout.splitlines()[0])
    assert meta["rules_file"].endswith("rules.yaml") and len(meta["rules_sha256"]) == 64


def test_every_matcher_through_the_proxy(lnrr, keys, procs, tmp_path):
    """Each condition decides what b receives; one stream, read up to a sentinel, shows them all."""
    keys("a"), keys("b")
    a_id = keys("a").node_id
    other = "02" + "11" * 32
    proxy, a, b, _ = session(lnrr, keys, procs, tmp_path, f"""
rules:
  - {{name: dir, match: {{dir: b->a, type: 32771}}, action: drop}}
  - {{name: number, match: {{type: [32773]}}, action: drop}}
  - {{name: range, match: {{type: 33000-33010}}, action: drop}}
  - {{name: parity, match: {{parity: even, custom: true, payload_prefix: "aa"}}, action: drop}}
  - {{name: regex, match: {{custom: true, payload_regex: "^bb.*ff$"}}, action: drop}}
  - {{name: every, match: {{type: 32785, every: 2}}, action: drop}}
  - {{name: count, match: {{type: 32787, count: 1}}, action: drop}}
  - {{name: gate, match: {{type: 32789}}, action: {{mark: gate}}}}
  - {{name: after, match: {{type: 32791, after: gate}}, action: drop}}
  - {{name: node-a, match: {{node: {{a: "{a_id}"}}, type: 32793}}, action: drop}}
  - {{name: node-other, match: {{node: {{a: "{other}"}}, type: 32795}}, action: drop}}
  - {{name: phase-now, match: {{phase: opening, type: 32797}}, action: drop}}
  - {{name: phase-not, match: {{phase: [closing, closed], type: 32799}}, action: drop}}
  - {{name: fields, match: {{type: ping, fields: {{num_pong_bytes: 7}}}}, action: {{replace: {{fields: {{num_pong_bytes: 9}}}}}}}}
  - {{name: named-inject, match: {{type: 32801}}, action: {{inject: {{name: ping, fields: {{num_pong_bytes: 3, ignored: ""}}, when: before}}}}}}
""")
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    sent = [
        (msg(32771, b"a"), True),            # dir: only b->a is dropped
        (msg(32773, b"n"), False),           # type by number
        (msg(33005, b"r"), False), (msg(33011, b"r"), True),      # range, inclusive
        (msg(32770, b"\xaa"), False), (msg(32769, b"\xaa"), True),  # parity
        (msg(32769, b"\xbb\x01\xff"), False), (msg(32769, b"\xbb\x01\xfe"), True),  # regex
        (msg(32785, b"1"), True), (msg(32785, b"2"), False), (msg(32785, b"3"), True), (msg(32785, b"4"), False),
        (msg(32787, b"1"), False), (msg(32787, b"2"), True),      # count: at most once
        (msg(32791, b"early"), True), (msg(32789, b""), True), (msg(32791, b"late"), False),  # after
        (msg(32793, b""), False), (msg(32795, b""), True),        # node ids
        (msg(32797, b""), False), (msg(32799, b""), True),        # phase before the message
        (msg(18, b"\x00\x07\x00\x00"), None),                     # replaced by fields
        (msg(32801, b"x"), None),                                 # a named ping injected before it
    ]
    for m, _ in sent:
        a.send_message(m)
    a.send_message(msg(32767 + 2, b"sentinel"))
    got = []
    while (m := b.read_message()) != msg(32769, b"sentinel"):
        got.append(m)
    expected = [m for m, passes in sent if passes]
    expected += [msg(18, b"\x00\x09\x00\x00"), msg(18, b"\x00\x03\x00\x00"), msg(32801, b"x")]
    assert got == expected
    b.send_message(msg(32771, b"back"))      # dir: dropped this way
    b.send_message(msg(32769, b"sentinel"))
    assert a.read_message() == msg(32769, b"sentinel")


def test_delay_keeps_order(lnrr, keys, procs, tmp_path):
    proxy, a, b, _ = session(lnrr, keys, procs, tmp_path, """
rules:
  - match: {type: ping}
    action: {delay: 300}
""")
    a.send_message(INIT)
    assert b.read_message() == INIT
    start = time.monotonic()
    a.send_message(msg(18, b"\x00\x00\x00\x00"))
    a.send_message(msg(32769, b"after the ping"))
    assert b.read_message()[:2] == b"\x00\x12"
    elapsed = time.monotonic() - start
    assert b.read_message() == msg(32769, b"after the ping")  # held behind the delayed ping
    assert 0.27 <= elapsed <= 1.0, elapsed


@pytest.mark.parametrize("kind, b_gets_it, closes", [
    ("before", False, True), ("after", True, True), ("drop", False, False),
    ("blackhole", False, False), ("stall", True, False), ("after-receive", True, True),
])
def test_dev_disconnect_behaviours(lnrr, keys, procs, tmp_path, kind, b_gets_it, closes):
    proxy, a, b, _ = session(lnrr, keys, procs, tmp_path, f"""
rules:
  - match: {{type: shutdown}}
    action: {{disconnect: {kind}}}
""")
    a.send_message(INIT)
    assert b.read_message() == INIT
    shutdown = build(f"shutdown channel_id={CID} scriptpubkey=0014" + "22" * 20)
    a.send_message(shutdown)
    got = read_or_none(b, timeout=1)
    assert (got == shutdown) == b_gets_it, (kind, got)
    if closes:
        assert closed(a) and closed(b), kind
    else:
        # The connection stays open; after drop, traffic flows again; after blackhole/stall, nothing does.
        a.send_message(msg(32769, b"later"))
        later = read_or_none(b, timeout=1)
        assert (later == msg(32769, b"later")) == (kind == "drop"), kind
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    annotated = [l for l in lines if l.get("hex") == shutdown.hex()]
    assert annotated and f"disconnect {kind}" in " ".join(annotated[0].get("comments", []))


def test_inject_at_phase_change(lnrr, keys, procs, tmp_path):
    proxy, a, b, _ = session(lnrr, keys, procs, tmp_path, """
rules:
  - name: poke-closingd
    match: {on: "channel -> closing"}
    action: {inject: {hex: "8001cafe", dir: a->b}}
""")
    reestablish = build(f"channel_reestablish channel_id={CID} next_commitment_number=1 next_revocation_number=0 "
                        f"your_last_per_commitment_secret={'00' * 32} my_current_per_commitment_point=02{'33' * 32}")
    shutdown = build(f"shutdown channel_id={CID} scriptpubkey=0014" + "22" * 20)
    a.send_message(INIT); b.read_message()
    b.send_message(INIT); a.read_message()
    a.send_message(reestablish); assert b.read_message() == reestablish
    b.send_message(reestablish); assert a.read_message() == reestablish
    a.send_message(shutdown); assert b.read_message() == shutdown
    assert read_or_none(b) is None  # one shutdown is not yet closing
    b.send_message(shutdown); assert a.read_message() == shutdown
    assert b.read_message() == bytes.fromhex("8001cafe")  # both shutdowns: channel -> closing
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    changes = [c for l in lines for c in l.get("phase_changes", [])]
    assert any("channel -> closing" in c for c in changes)


def test_probability_is_reproducible_with_a_seed(lnrr, keys, procs, tmp_path):
    def dropped(seed, sub):
        sub.mkdir()
        proxy, a, b, _ = session(lnrr, keys, procs, sub, f"""
seed: {seed}
rules:
  - match: {{custom: true, probability: 0.5}}
    action: drop
""")
        a.send_message(INIT); b.read_message()
        for i in range(60):
            a.send_message(msg(32769, bytes([i])))
        a.send_message(msg(18, b"\x00\x00\x00\x00"))
        got = []
        while True:
            m = b.read_message()
            if m[:2] == b"\x00\x12":
                break
            got.append(m[2])
        a.connection.close()
        proxy.stop()
        return got

    first = dropped(42, tmp_path / "one")
    assert dropped(42, tmp_path / "two") == first
    assert dropped(43, tmp_path / "three") != first
    assert 10 < len(first) < 50


def test_sighup_reloads_and_refuses_broken_files(lnrr, keys, procs, tmp_path):
    proxy, a, b, rules = session(lnrr, keys, procs, tmp_path, "rules:\n  - match: {custom: true}\n    action: drop\n")
    a.send_message(INIT); b.read_message()
    a.send_message(msg(32769, b"1"))
    assert read_or_none(b) is None
    rules.write_text("rules:\n  - match: {custom: true}\n    action: {replace: {hex: '8003aa'}}\n")
    proxy.proc.popen.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    a.send_message(msg(32769, b"2"))
    assert b.read_message() == bytes.fromhex("8003aa")
    rules.write_text("rules:\n  - match: {tpye: 1}\n    action: drop\n")
    proxy.proc.popen.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    a.send_message(msg(32769, b"3"))
    assert b.read_message() == bytes.fromhex("8003aa")  # the old rules stay
    assert "tpye" in proxy.proc.stderr_text()


def test_rules_check_and_import(lnrr, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - match: {type: comitment_signed, phase: chanel}\n    action: {inject: {hex: zz}}\n")
    r = run(lnrr, "rules", "check", bad, check=False)
    assert r.returncode == 1
    assert f"{bad}:2:19: error: unknown message type 'comitment_signed' (did you mean commitment_signed?)" in r.stdout
    assert f"{bad}:2:44: error: 'chanel' is not a phase" in r.stdout
    assert f"{bad}:3:28: error: hex must be" in r.stdout
    assert run(lnrr, "rules", "check", tmp_path / "missing.yaml", check=False).returncode == 2

    dd = tmp_path / "dev-disconnect"
    dd.write_text("-WIRE_COMMITMENT_SIGNED\n+WIRE_SHUTDOWN*2\n<WIRE_FUNDING_SIGNED\nxWIRE_PING*3\n")
    out = tmp_path / "dd.yaml"
    run(lnrr, "rules", "import-dev-disconnect", dd, "--as", "b", "--out", out)
    assert run(lnrr, "rules", "check", out).returncode == 0
    text = out.read_text()
    assert "disconnect: before" in text and "nth: 2" in text and 'dir: "a->b"' in text  # `<` for node b is a->b
    dd.write_text("-WIRE_COMMITMENT_SIGNED\n!WIRE_SHUTDOWN\n")
    r = run(lnrr, "rules", "import-dev-disconnect", dd, check=False)
    assert r.returncode == 1 and "line 2" in r.stderr
