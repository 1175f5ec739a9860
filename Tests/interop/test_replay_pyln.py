"""`lnrr replay` against live pyln-proto nodes: sides, match modes, timing, failures, reconnects.

Recordings are made through `lnrr record` between two pyln-proto nodes the test drives; the replay
then plays one side against a fresh pyln-proto node, which tells the test what it really received.
"""
import json
import os
import socket
import struct
import threading
import time

import pytest
from pyln.proto.wire import connect, PublicKey

from conftest import run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings, show_json

CID = b"\x11" * 32


def closing_signed(fee: int, sig: bytes = b"\x01" * 64) -> bytes:
    return msg(39, CID + struct.pack(">Q", fee) + sig)


def record_sessions(lnrr, keys, procs, tmp_path, script, sessions):
    """Runs `script(a, b, n)` for sessions n = 1.. between pyln-proto nodes a and b through the
    proxy, a dialling anew each time; returns the recordings, one per session."""
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    for n in range(1, sessions + 1):
        a = proxy.dial(keys("a"), keys("b").node_id)
        b = upstream.wait_connection(n)
        script(a, b, n)
        time.sleep(0.3)
    proxy.stop()
    upstream.close()
    files = recordings(tmp_path / "rec")
    assert len(files) == sessions
    return files


def record(lnrr, keys, procs, tmp_path, script):
    """One session: `script(a, b)`; returns its recording."""
    [path] = record_sessions(lnrr, keys, procs, tmp_path, lambda a, b, n: script(a, b), 1)
    return path


def listening_port(proc):
    """The port of a `lnrr replay --listen ... --json` process, from its listening line."""
    proc.wait_lines(lambda ls: any('"listening"' in l for l in ls))
    return int([l for l in proc.json_lines() if l.get("event") == "listening"][0]["address"].rsplit(":", 1)[1])


def basic(a, b):
    """a: init, custom; b: init, closing_signed; then a closes."""
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    a.send_message(msg(32769, b"hello"))
    assert b.read_message() == msg(32769, b"hello")
    b.send_message(closing_signed(1000))
    assert a.read_message() == closing_signed(1000)
    a.connection.close()


class LiveB:
    """The live node replay plays a against: answers with `respond(message) -> [messages]`."""

    def __init__(self, key, respond, connections=1):
        self.upstream = UpstreamNode(key)
        self.received = []          # (connection number, time, message)
        self.respond = respond
        self.ended = []
        self.thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self.thread.start()

    @property
    def address(self):
        return self.upstream.address

    def _serve(self, connections):
        for n in range(1, connections + 1):
            conn = self.upstream.wait_connection(n, timeout=60)
            conn.connection.settimeout(30)
            while True:
                try:
                    m = conn.read_message()
                except Exception as e:  # the replay closed, or the test ended
                    self.ended.append((n, type(e).__name__))
                    break
                self.received.append((n, time.monotonic(), m))
                for answer in self.respond(m, conn):
                    if answer is None:
                        conn.connection.close()
                        break
                    conn.send_message(answer)

    def join(self):
        self.thread.join(timeout=60)
        self.upstream.close()


def replay(lnrr, path, *args, check=False):
    r = run(lnrr, "replay", *[str(p) for p in (path if isinstance(path, list) else [path])], "--json", *args,
            check=False, timeout=120)
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    return r, lines


def steps(lines):
    return [l for l in lines if "result" in l]


def answers_as_recorded(fee=1000, sig=b"\x01" * 64, extra_before=None):
    def respond(m, conn):
        if m == INIT:
            return [INIT]
        if m[:2] == b"\x80\x01":
            return ([extra_before] if extra_before else []) + [closing_signed(fee, sig)]
        return []
    return respond


def test_replay_as_a_sends_what_b_received_and_matches(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, basic)
    live = LiveB(keys("b"), answers_as_recorded())
    r, lines = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path, "--timing", "fast")
    live.join()
    assert r.returncode == 0, r.stdout + r.stderr
    assert [m for _, _, m in live.received] == [INIT, msg(32769, b"hello")]
    results = [(l["step"], l["dir"], l.get("name"), l["result"]) for l in steps(lines)]
    assert results == [(1, "a->b", "init", "sent"), (2, "b->a", "init", "matched"),
                       (3, "a->b", "custom 32769", "sent"), (4, "b->a", "closing_signed", "matched"),
                       (5, "a->b", None, "closed")]
    assert lines[-1]["verdict"] == "matched"


@pytest.mark.parametrize("mode, fee, sig, result, detail", [
    ("type", 1500, b"\x02" * 64, "matched", None),
    ("fields", 1000, b"\x02" * 64, "matched", None),           # signatures are not compared
    ("fields", 1500, b"\x01" * 64, "diverged", "fee_satoshis: recorded 1000, live 1500"),
    ("exact", 1000, b"\x01" * 64, "matched", None),
    ("exact", 1000, b"\x02" * 64, "diverged", "bytes differ from offset 42 (recorded 01, live 02)"),
])
def test_match_modes(lnrr, keys, procs, tmp_path, mode, fee, sig, result, detail):
    path = record(lnrr, keys, procs, tmp_path, basic)
    live = LiveB(keys("b"), answers_as_recorded(fee, sig))
    r, lines = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path,
                      "--timing", "fast", "--match", mode)
    live.join()
    [line] = [l for l in steps(lines) if l.get("name") == "closing_signed"]
    assert line["result"] == result, line
    if detail:
        assert detail in line["detail"]
        assert r.returncode == 1 and lines[-1]["verdict"] == "diverged"
        # --json carries each difference whole, as an object.
        [difference] = line["differences"]
        if mode == "fields":
            assert difference == {"field": "fee_satoshis", "recorded": 1000, "live": 1500}
        else:
            assert difference["field"] == "bytes" and difference["offset"] == 42
            assert bytes.fromhex(difference["live"]) == closing_signed(fee, sig)
    else:
        assert r.returncode == 0, r.stdout


def test_replay_as_b_listens_and_plays_b(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, basic)
    p = procs(lnrr, "replay", path, "--as", "b", "--listen", "127.0.0.1:0", "--key", keys("b").path, "--json", "--timing", "fast")
    port = listening_port(p)
    a = connect(keys("a").priv, PublicKey(bytes.fromhex(keys("b").node_id)), "127.0.0.1", port)
    a.send_message(INIT)
    assert a.read_message() == INIT
    a.send_message(msg(32769, b"hello"))
    assert a.read_message() == closing_signed(1000)   # b's recorded message, sent by lnrr
    a.connection.close()                               # a closed in the recording: expected
    assert p.wait(timeout=30) == 0, p.lines
    lines = p.json_lines()
    assert [(l["dir"], l["result"]) for l in steps(lines)] == [
        ("a->b", "matched"), ("b->a", "sent"), ("a->b", "matched"), ("b->a", "sent"), ("a->b", "matched")]
    assert steps(lines)[-1]["detail"] == "the live node closed the connection, as recorded"


def gap_script(a, b):
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    a.send_message(msg(32769, b"one"))
    assert b.read_message() == msg(32769, b"one")
    time.sleep(0.3)
    a.send_message(msg(32769, b"two"))
    assert b.read_message() == msg(32769, b"two")
    a.connection.close()


@pytest.mark.parametrize("timing, factor", [("recorded", 1.0), ("scale:0.5", 0.5), ("fast", 0.0)])
def test_timing_modes_keep_or_change_the_recorded_gap(lnrr, keys, procs, tmp_path, timing, factor):
    path = record(lnrr, keys, procs, tmp_path, gap_script)
    lines, _ = show_json(lnrr, path)
    t = {l["hex"]: l["t_ns"] for l in lines if "hex" in l}
    recorded_gap = (t[msg(32769, b"two").hex()] - t[msg(32769, b"one").hex()]) / 1e9
    assert 0.29 < recorded_gap < 0.4, recorded_gap
    live = LiveB(keys("b"), lambda m, c: [INIT] if m == INIT else [])
    r, out = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path, "--timing", timing)
    live.join()
    assert r.returncode == 0, r.stdout + r.stderr
    at = {m: when for _, when, m in live.received}
    gap = at[msg(32769, b"two")] - at[msg(32769, b"one")]
    if factor:
        assert abs(gap - recorded_gap * factor) <= 0.1 * recorded_gap * factor, (gap, recorded_gap)
    else:
        assert gap < 0.05, gap


def two_from_b(a, b):
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    a.send_message(msg(32769, b"hello"))
    assert b.read_message() == msg(32769, b"hello")
    b.send_message(msg(32771, b"first")); assert a.read_message() == msg(32771, b"first")
    b.send_message(msg(32773, b"second")); assert a.read_message() == msg(32773, b"second")
    a.send_message(msg(32769, b"bye")); assert b.read_message() == msg(32769, b"bye")
    a.connection.close()


def test_missing_message_times_out_and_stops(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, two_from_b)
    live = LiveB(keys("b"), lambda m, c: [INIT] if m == INIT else [msg(32771, b"first")] if m == msg(32769, b"hello") else [])
    start = time.monotonic()
    r, lines = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path,
                      "--timing", "fast", "--timeout", "700")
    elapsed = time.monotonic() - start
    live.join()
    assert r.returncode == 1
    by_name = {l.get("name"): l for l in steps(lines)}
    assert by_name["custom 32773"]["result"] == "missing" and "within 700 ms" in by_name["custom 32773"]["detail"]
    assert steps(lines)[-1]["result"] == "not-run"
    assert msg(32769, b"bye") not in [m for _, _, m in live.received]   # the replay stopped there
    assert lines[-1]["verdict"] == "diverged" and lines[-1]["missing"] == 1
    assert 0.7 < elapsed < 10


def test_unexpected_message_is_reported(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, basic)
    live = LiveB(keys("b"), answers_as_recorded(extra_before=msg(32775, b"surprise")))
    r, lines = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path, "--timing", "fast")
    live.join()
    assert r.returncode == 1
    [extra] = [l for l in steps(lines) if l["result"] == "unexpected"]
    assert extra["type"] == 32775 and extra["step"] is None and "closing_signed" in extra["detail"]
    assert extra["at_step"] == 4   # it came while step 4 was awaited
    assert [l for l in steps(lines) if l.get("name") == "closing_signed"][0]["result"] == "matched"
    assert lines[-1]["verdict"] == "diverged" and lines[-1]["unexpected"] == 1
    assert lines[-1]["first_divergence_step"] == 4
    # The text verdict names that step too.
    live = LiveB(keys("b"), answers_as_recorded(extra_before=msg(32775, b"surprise")))
    r = run(lnrr, "replay", path, "--as", "a", "--connect", live.address, "--key", keys("a").path, "--timing", "fast",
            check=False, timeout=120)
    live.join()
    assert "verdict: diverged at step 4: b->a custom 32775 unexpected (while waiting for closing_signed)" in r.stdout, r.stdout


def test_peer_that_disconnects_mid_replay(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, two_from_b)
    live = LiveB(keys("b"), lambda m, c: [INIT] if m == INIT else [None])   # closes on the custom message
    start = time.monotonic()
    r, lines = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path,
                      "--timing", "fast", "--timeout", "20000")
    live.join()
    assert r.returncode == 1
    missing = [l for l in steps(lines) if l["result"] == "missing"][0]
    assert missing["name"] == "custom 32771" and "closed the connection" in missing["detail"]
    assert time.monotonic() - start < 10     # noticed at once, not after the timeout


def test_truncated_recording_replays_up_to_its_last_complete_message(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, two_from_b)
    lines, _ = show_json(lnrr, path)
    data = path.read_bytes()
    # Cut the file inside the block of b's second custom message: what a kill -9 mid-write leaves.
    blocks, offset = [], 0
    while offset < len(data):
        length = struct.unpack("<I", data[offset + 4:offset + 8])[0]
        blocks.append((offset, length, data[offset:offset + length]))
        offset += length
    second = next(o for o, n, b in blocks if msg(32773, b"second") in b)
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:second + 20])
    os.chmod(cut, 0o600)
    live = LiveB(keys("b"), lambda m, c: [INIT] if m == INIT else [msg(32771, b"first")] if m[-5:] == b"hello" else [])
    r, out = replay(lnrr, cut, "--as", "a", "--connect", live.address, "--key", keys("a").path, "--timing", "fast")
    live.join()
    assert r.returncode == 0, r.stdout
    notices = [l["message"] for l in out if l.get("event") == "notice"]
    assert any("truncated" in n for n in notices), notices
    assert [s.get("name") for s in steps(out)] == ["init", "init", "custom 32769", "custom 32771", None]
    assert steps(out)[-1]["detail"] == "end of a truncated recording"
    assert out[-1]["truncated"] is True and out[-1]["verdict"] == "matched"


def init_then(a, b, sender, receiver, message):
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    sender.send_message(message); assert receiver.read_message() == message
    a.connection.close()


def test_several_recordings_replay_as_one_with_reconnects(lnrr, keys, procs, tmp_path):
    files = record_sessions(lnrr, keys, procs, tmp_path, lambda a, b, n: init_then(a, b, a, b, msg(32769, bytes([n]))), 2)
    live = LiveB(keys("b"), lambda m, c: [INIT] if m == INIT else [], connections=2)
    r, lines = replay(lnrr, list(reversed(files)), "--as", "a", "--connect", live.address, "--key", keys("a").path,
                      "--timing", "fast")   # given out of order: replayed in recorded order
    live.join()
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(n, m) for n, _, m in live.received] == [(1, INIT), (1, msg(32769, b"\x01")), (2, INIT), (2, msg(32769, b"\x02"))]
    assert sorted({l["segment"] for l in steps(lines)}) == [0, 1]


def test_pings_are_answered_and_not_expected(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, basic)
    pongs = []

    def respond(m, conn):
        if m == INIT:
            return [INIT, msg(18, b"\x00\x03\x00\x00")]     # a ping the recording does not have
        if m[:2] == b"\x00\x13":
            pongs.append(m)
            return []
        return answers_as_recorded()(m, conn)
    live = LiveB(keys("b"), respond)
    r, lines = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path, "--timing", "fast")
    live.join()
    assert r.returncode == 0, r.stdout
    assert pongs == [msg(19, b"\x00\x03\x00\x00\x00")]


def test_replay_rules_change_what_is_sent(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, basic)
    rules = tmp_path / "r.yaml"
    rules.write_text('rules:\n  - {name: swap, match: {type: 32769}, action: {replace: {hex: "8003beef"}}}\n')
    live = LiveB(keys("b"), answers_as_recorded())
    r, lines = replay(lnrr, path, "--as", "a", "--connect", live.address, "--key", keys("a").path,
                      "--timing", "fast", "--rules", rules, "--timeout", "800")
    live.join()
    assert bytes.fromhex("8003beef") in [m for _, _, m in live.received]
    # The live node never answers 8003, so the recorded closing_signed goes missing.
    assert r.returncode == 1
    assert [l for l in steps(lines) if l.get("name") == "closing_signed"][0]["result"] == "missing"


def test_offline_prints_what_rules_would_do(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, basic)
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {name: no-close, match: {type: closing_signed}, action: drop}\n")
    r = run(lnrr, "replay", "--offline", path, "--rules", rules, "--json")
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    acted = [l for l in lines if l.get("rules")]
    assert [(l["name"], l["rules"]) for l in acted] == [("closing_signed", ['rule "no-close": dropped'])]
    assert lines[-1] == {"messages": 4, "acted_on": 1}


def test_usage_and_connection_errors_exit_2(lnrr, keys, procs, tmp_path):
    path = record(lnrr, keys, procs, tmp_path, basic)
    k = keys("a").path
    free = socket.socket(); free.bind(("127.0.0.1", 0)); port = free.getsockname()[1]; free.close()
    cases = [
        ([path, "--connect", f"{keys('b').node_id}@127.0.0.1:{port}", "--key", k], "--as must be a or b"),
        ([path, "--as", "a", "--key", k], "exactly one of --connect"),
        ([path, "--as", "a", "--connect", f"{keys('b').node_id}@127.0.0.1:{port}", "--key", k, "--timing", "slow"], "--timing must be"),
        ([path, "--as", "a", "--connect", f"{keys('b').node_id}@127.0.0.1:{port}", "--key", k, "--ignore", "pingg"], "did you mean ping"),
        ([path, "--as", "a", "--connect", f"{keys('b').node_id}@127.0.0.1:{port}", "--key", k], "cannot connect"),
        ([k, "--as", "a", "--connect", f"{keys('b').node_id}@127.0.0.1:{port}", "--key", k], "not an lnrr recording"),
    ]
    for args, message in cases:
        r = run(lnrr, "replay", *args, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)


def test_listening_replay_of_several_recordings_takes_one_connection_each(lnrr, keys, procs, tmp_path):
    files = record_sessions(lnrr, keys, procs, tmp_path, lambda a, b, n: init_then(a, b, b, a, msg(32771, bytes([n]))), 2)
    p = procs(lnrr, "replay", *files, "--as", "b", "--listen", "127.0.0.1:0",
              "--key", keys("b").path, "--json", "--timing", "fast")
    port = listening_port(p)
    dial = lambda: connect(keys("a").priv, PublicKey(bytes.fromhex(keys("b").node_id)), "127.0.0.1", port)
    first = dial()
    first.send_message(INIT)
    assert first.read_message() == INIT and first.read_message() == msg(32771, b"\x01")
    # a reconnects before lnrr has seen the first connection end: the early connection must wait
    # for the second session, not be turned away. Its handshake blocks until then, so dial aside.
    second = {}
    dialer = threading.Thread(target=lambda: second.setdefault("conn", dial()), daemon=True)
    dialer.start()
    time.sleep(0.3)
    assert dialer.is_alive()            # parked: lnrr is still in the first session
    first.connection.close()
    dialer.join(timeout=10)
    a = second["conn"]
    a.send_message(INIT)
    assert a.read_message() == INIT and a.read_message() == msg(32771, b"\x02")
    a.connection.close()
    assert p.wait(timeout=30) == 0, p.lines
    lines = p.json_lines()
    assert lines[-1]["verdict"] == "matched"
    assert [l["segment"] for l in steps(lines)] == [0, 0, 0, 0, 1, 1, 1, 1]
