"""Issue #17, the rest: faults from a connection's first byte (`at: connect`), handshake acts
included; `delfault` undoing shaping; the slicer's size variation.

The far side is a raw socket that timestamps every read (what TCP delivered, segment by segment),
driving a pyln-proto handshake (Core Lightning's BOLT 8 code) over it; or pyln-proto peers. What is
asserted is what they receive.
"""
import errno
import socket
import threading
import time

from pyln.client import LightningRpc, RpcError
from pyln.proto.wire import LightningConnection, PublicKey

from conftest import run
from test_faults_pyln import expect_rst
from test_proxy_pyln import INIT, Proxy, UpstreamNode, events_in, msg, recordings, show_json


class Segments:
    """A socket whose recv(n) returns n bytes (fewer only at EOF), as pyln-proto expects, and
    that logs what each underlying read got: with the reader waiting and lnrr's segments some
    tens of milliseconds apart, one read is one TCP segment."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.reads = []          # sizes, in order
        self.total = 0

    def recv(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                break
            self.reads.append(len(d))
            self.total += len(d)
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data):
        self.sock.sendall(data)
        return len(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def cut(reads, lengths):
    """Splits the read sizes into the writes they add up to (`lengths`, in order)."""
    out, at = [], 0
    for length in lengths:
        group, got = [], 0
        while got < length:
            group.append(reads[at]); got += reads[at]; at += 1
        assert got == length, f"reads {reads} do not add up to writes {lengths}"
        out.append(group)
    return out


def raw_a(proxy, key, b_node_id):
    """Node a over a raw socket: a pyln-proto initiator whose reads are logged."""
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.settimeout(10)
    seg = Segments(sock)
    conn = LightningConnection(seg, PublicKey(bytes.fromhex(b_node_id)), key.priv, is_initiator=True)
    conn.shake()
    return conn, seg


class RawUpstream:
    """Node b over a raw listening socket: accepts lnrr's dial and answers as a pyln-proto
    responder, its reads logged."""

    def __init__(self, key):
        self.key = key
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.conns, self.segs, self.errors = [], [], []
        self.cv = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            sock.settimeout(10)
            seg = Segments(sock)
            conn = LightningConnection(seg, None, self.key.priv, is_initiator=False)
            try:
                conn.shake()
            except Exception as e:  # noqa: BLE001  (reported by wait)
                self.errors.append(e)
            with self.cv:
                self.conns.append(conn)
                self.segs.append(seg)
                self.cv.notify_all()

    def wait(self, n=1, timeout=20):
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.conns) >= n, timeout), "lnrr did not dial b"
        assert not self.errors, self.errors
        return self.conns[n - 1], self.segs[n - 1]

    @property
    def address(self):
        return f"{self.key.node_id}@127.0.0.1:{self.port}"


def start(lnrr, keys, procs, tmp_path, rules, upstream=None, *extra):
    keys("a"), keys("b")
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    upstream = upstream or UpstreamNode(keys("b"))
    return Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--rules", path, *extra), upstream


def test_slicer_at_connect_toward_a_splits_act_two_and_the_first_header(lnrr, keys, procs, tmp_path):
    proxy, b_node = start(lnrr, keys, procs, tmp_path, """
rules:
  - name: crumbs
    match: {at: connect, dir: b2a}
    action: {slicer: {size: 7, gap: 40}}
""")
    a, seg = raw_a(proxy, keys("a"), keys("b").node_id)
    # Act two, the first bytes lnrr writes to a: 50 bytes, as 7-byte segments.
    assert seg.reads[:8] == [7, 7, 7, 7, 7, 7, 7, 1], seg.reads
    b = b_node.wait_connection()
    b.connection.settimeout(10)
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT)
    assert a.read_message() == INIT
    # b's init toward a: a 40-byte frame (18-byte header + 6 + 16), cut from its start: the
    # header arrives as 7, 7 and the first 4 bytes of the third segment.
    [act2, frame] = cut(seg.reads, [50, len(INIT) + 34])
    assert frame == [7, 7, 7, 7, 7, 5], frame
    for n in range(5):
        b.send_message(msg(32769, bytes([n]) * (20 + n)))
    assert [a.read_message() for _ in range(5)] == [msg(32769, bytes([n]) * (20 + n)) for n in range(5)]
    assert max(seg.reads) <= 7
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    events = events_in(lines)
    [fault] = events_in(lines, "fault")
    assert fault["fault"] == "slicer" and fault["direction"] == "b->a" and fault["at"] == "connect"
    assert fault["rule"] == "crumbs"
    # Taken effect at a's connect, before act two: written first once the recording opened (after
    # a's act three), with that time.
    handshake = [e for e in events if e["event"] == "handshake"][0]
    assert events.index(fault) < events.index(handshake), events
    assert fault["ts_ns"] < handshake["ts_ns"] - 250_000_000, (fault, handshake)  # act two took ~280 ms


def test_slicer_at_connect_toward_b_splits_acts_one_and_three(lnrr, keys, procs, tmp_path):
    keys("b")
    upstream = RawUpstream(keys("b"))
    proxy, _ = start(lnrr, keys, procs, tmp_path, """
rules:
  - name: crumbs-b
    match: {at: connect, dir: a2b}
    action: {slicer: {size: 7, gap: 30}}
""", upstream)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b, seg = upstream.wait()
    b.connection.sock.settimeout(10)
    # Act one (50 bytes) and act three (66 bytes): lnrr writes both as the initiator toward b.
    acts = cut(seg.reads, [50, 66])
    assert acts == [[7] * 7 + [1], [7] * 9 + [3]], seg.reads
    a.send_message(INIT)
    assert b.read_message() == INIT
    messages = [msg(32771, bytes([n]) * (3 * n)) for n in range(6)]
    for m in messages:
        a.send_message(m)
    assert [b.read_message() for _ in messages] == messages
    assert max(seg.reads) <= 7, seg.reads
    proxy.stop()


def test_slicer_at_connect_both_ways_between_pyln_peers_every_message_intact(lnrr, keys, procs, tmp_path):
    keys("b")
    upstream = RawUpstream(keys("b"))
    proxy, _ = start(lnrr, keys, procs, tmp_path, """
rules:
  - name: crumbs
    match: {at: connect}
    action: {slicer: {size: 3, gap: 0}}
""", upstream)
    a, aseg = raw_a(proxy, keys("a"), keys("b").node_id)
    b, bseg = upstream.wait()
    messages = [msg(32769 + 2 * (n % 4), bytes([n % 256]) * (n * 11 % 400)) for n in range(120)]
    for m in messages:
        a.send_message(m)
        b.send_message(m)
    assert [b.read_message() for _ in messages] == messages
    assert [a.read_message() for _ in messages] == messages
    # 3-byte segments written back to back may coalesce in the receiver's socket; what matters
    # is that both handshakes and every frame survived being cut at every 3rd byte.
    assert len(aseg.reads) > 1 and len(bseg.reads) > 1
    proxy.stop()


def test_limit_data_at_connect_cuts_inside_act_two(lnrr, keys, procs, tmp_path):
    proxy, _ = start(lnrr, keys, procs, tmp_path, """
rules:
  - name: stub
    match: {at: connect, dir: b2a}
    action: {limit-data: 20}
""", None, "--record-failed-handshakes")
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.settimeout(10)
    conn = LightningConnection(sock, PublicKey(bytes.fromhex(keys("b").node_id)), keys("a").priv, is_initiator=True)
    sock.sendall(conn.handshake_act_one_initiator())
    got = b""
    while d := sock.recv(65536):
        got += d
    # Exactly 20 bytes of act two's 50, then the close (a FIN): the handshake cannot complete.
    assert len(got) == 20, len(got)
    assert got[0] == 0                                    # act two's version byte
    sock.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    [fault] = events_in(lines, "fault")
    assert fault["fault"] == "limit-data" and fault["at"] == "connect" and fault["direction"] == "b->a"
    [close] = events_in(lines, "close")
    assert "20 bytes toward a were written" in close["detail"], close


def test_reset_at_connect_toward_a(lnrr, keys, procs, tmp_path):
    proxy, _ = start(lnrr, keys, procs, tmp_path, """
rules:
  - {name: rst, match: {at: connect, dir: b2a}, action: reset}
""")
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.settimeout(10)
    try:
        time.sleep(0.2)
        sock.sendall(b"\x00" * 50)
        data = sock.recv(65536)
        raise AssertionError(f"no reset: read {data!r}")
    except (ConnectionResetError, BrokenPipeError) as e:
        assert e.errno in (errno.ECONNRESET, errno.EPIPE)
    proxy.stop()
    assert "fault reset toward a at connect" in proxy.proc.stderr_text()


def test_slicer_variation_sizes_spread_and_repeat_with_the_seed(lnrr, keys, procs, tmp_path):
    proxy, b_node = start(lnrr, keys, procs, tmp_path, """
seed: 11
rules:
  - name: ragged
    match: {at: connect, dir: b2a}
    action: {slicer: {size: 7, variation: 3, gap: 30}}
""")
    runs = []
    for n in range(2):
        a, seg = raw_a(proxy, keys("a"), keys("b").node_id)
        b = b_node.wait_connection(n + 1)
        b.connection.settimeout(10)
        a.send_message(INIT); assert b.read_message() == INIT
        b.send_message(INIT); assert a.read_message() == INIT
        writes = cut(seg.reads, [50, len(INIT) + 34])
        for w in writes:
            # Every segment but a write's last (the remainder) is 7 ± 3 bytes.
            assert all(4 <= s <= 10 for s in w[:-1]) and 1 <= w[-1] <= 10, writes
        runs.append(writes)
        a.connection.close()
    print(f"slicer 7 ± 3: act two {runs[0][0]}, init frame {runs[0][1]}")
    sizes = [s for w in runs[0] for s in w[:-1]]
    assert len(set(sizes)) > 1, sizes                       # not all equal
    assert runs[0] == runs[1]                               # the same seed: the same cuts
    proxy.stop()


def test_delfault_undoes_a_live_slicer(lnrr, keys, procs, tmp_path):
    sock_path = tmp_path / "lnrr.sock"
    proxy, b_node = start(lnrr, keys, procs, tmp_path, "rules: []\n", None, "--control", sock_path)
    rpc = LightningRpc(str(sock_path))
    a, seg = raw_a(proxy, keys("a"), keys("b").node_id)
    b = b_node.wait_connection()
    b.connection.settimeout(10)
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    assert seg.reads == [50, len(INIT) + 34], seg.reads     # unshaped so far: whole writes
    rpc.call("addfault", {"fault": '{"slicer": {"size": 5, "gap": 20}}', "direction": "b2a", "name": "crumbs"})
    time.sleep(0.5)
    m = msg(32769, b"\x01" * 30)                            # a 66-byte frame
    b.send_message(m); assert a.read_message() == m         # the trigger: it goes whole
    before = len(seg.reads)
    b.send_message(m); assert a.read_message() == m
    sliced = seg.reads[before:]
    assert sliced == [5] * 13 + [1], sliced
    assert rpc.call("delfault", {"name": "crumbs"}) == {"deleted": "crumbs"}
    time.sleep(0.5)
    before = len(seg.reads)
    for _ in range(3):
        b.send_message(m); assert a.read_message() == m
        time.sleep(0.05)
    # Full-frame writes again: one read per frame.
    assert seg.reads[before:] == [len(m) + 34] * 3, seg.reads[before:]
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    faults = events_in(lines, "fault")
    assert [(e["fault"], e["detail"], e["rule"]) for e in faults] == [
        ("slicer", "slicer 5 B every 20000 us", "crumbs"), ("slicer", "removed", "crumbs")], faults


def test_addfault_at_connect_acts_on_new_connections_only(lnrr, keys, procs, tmp_path):
    sock_path = tmp_path / "lnrr.sock"
    proxy, b_node = start(lnrr, keys, procs, tmp_path, "rules: []\n", None, "--control", sock_path)
    rpc = LightningRpc(str(sock_path))
    first, first_seg = raw_a(proxy, keys("a"), keys("b").node_id)
    b1 = b_node.wait_connection(1)
    rpc.call("addfault", {"fault": '{"slicer": {"size": 7, "gap": 30}}', "direction": "b2a", "at": "connect", "name": "c"})
    try:
        rpc.call("addfault", {"fault": '{"latency": 5}', "direction": "b2a", "at": "connect"})
        raise AssertionError("latency at connect was taken")
    except RpcError as e:
        assert e.error["code"] == -32602 and "latency delays messages" in e.error["message"], e.error
    try:
        rpc.call("addfault", {"fault": "reset", "direction": "b2a", "at": "start"})
        raise AssertionError("at=start was taken")
    except RpcError as e:
        assert e.error["code"] == -32602 and '"connect"' in e.error["message"], e.error
    assert [r.get("at") for r in rpc.call("listrules")["rules"] if r["name"] == "c"] == ["connect"]
    time.sleep(0.5)
    second, second_seg = raw_a(proxy, keys("a"), keys("b").node_id)
    assert second_seg.reads[:8] == [7] * 7 + [1], second_seg.reads
    # The session that was already up is not touched.
    b1.connection.settimeout(10)
    b1.send_message(INIT)
    assert first.read_message() == INIT
    assert first_seg.reads == [50, len(INIT) + 34], first_seg.reads
    proxy.stop()


def test_rules_check_reports_meaningless_at_connect_rules(lnrr, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""rules:
  - name: typed
    match: {at: connect, type: ping}
    action: reset
  - name: dropper
    match: {at: connect}
    action: drop
  - name: slow
    match: {at: connect, dir: a2b}
    action: [{slicer: {size: 7}}, {latency: 50}]
  - name: when
    match: {at: conect}
    action: reset
  - name: wide
    action: {slicer: {size: 4, variation: 4}}
""")
    r = run(lnrr, "rules", "check", bad, check=False)
    assert r.returncode == 1, r
    out = r.stdout + r.stderr
    print(out)
    assert f"{bad}:3:26: error: `at: connect` takes no `type`" in out
    assert f"{bad}:7:13: error: 'drop' acts on a message, and an `at: connect` rule acts before any" in out
    assert "remove `at: connect` to drop matching messages" in out
    assert f"{bad}:10:35: error: latency delays messages" in out
    assert f"{bad}:12:17: error: at must be connect" in out and "(did you mean connect?)" in out
    assert f"{bad}:15:43: error: slicer variation 4 must be less than size 4" in out
    good = tmp_path / "good.yaml"
    good.write_text("""seed: 3
rules:
  - name: crumbs
    match: {at: connect, dir: a2b}
    action: [{slicer: {size: 7, variation: 3, gap: 1}}, {limit-data: 5000}, {slow-close: 100}]
""")
    r = run(lnrr, "rules", "check", good, check=False)
    assert r.returncode == 0 and "1 rule, OK" in r.stdout + r.stderr, r


def test_reset_at_connect_toward_b_once_b_accepted(lnrr, keys, procs, tmp_path):
    keys("b")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    upstream = type("U", (), {"address": f"{keys('b').node_id}@127.0.0.1:{server.getsockname()[1]}"})()
    proxy, _ = start(lnrr, keys, procs, tmp_path, """
rules:
  - {name: rst-b, match: {at: connect, dir: a2b}, action: reset}
""", upstream)
    a = proxy.dial(keys("a"), keys("b").node_id)        # a's handshake with lnrr completes
    server.settimeout(10)
    b, _ = server.accept()
    b.settimeout(10)
    got = b""
    try:
        while d := b.recv(65536):
            got += d
        raise AssertionError(f"b saw a FIN after {len(got)} bytes, not an RST")
    except ConnectionResetError:
        pass
    assert len(got) in (0, 50), got                       # act one may have left before the RST
    expect_rst(a, timeout=10)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    lines, _ = show_json(lnrr, path)
    [fault] = events_in(lines, "fault")
    assert fault["fault"] == "reset" and fault["direction"] == "a->b" and fault["at"] == "connect"
