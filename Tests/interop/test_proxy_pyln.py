"""`lnrr record` between two pyln-proto nodes: relaying, recordings, failures, modes.

Node a and node b are pyln-proto (Core Lightning's BOLT 8); the proxy must be invisible to them
(transparent mode) and its recording must equal what they exchanged.
"""
import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest
from pyln.proto.wire import LightningServerSocket, PublicKey, connect

from conftest import free_port, run, wait_for_port


def msg(type_: int, payload: bytes = b"") -> bytes:
    return struct.pack(">H", type_) + payload


INIT = msg(16, b"\x00\x00\x00\x00")


class UpstreamNode:
    """Node b: a pyln-proto responder accepting connections in a background thread."""

    def __init__(self, key):
        self.key = key
        self.server = LightningServerSocket(key.priv)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.accepted = []
        self.cv = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.cv:
                self.accepted.append(conn)
                self.cv.notify_all()

    def wait_connection(self, n=1, timeout=20):
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.accepted) >= n, timeout), "upstream got no connection"
            return self.accepted[n - 1]

    def close(self):
        self.server.close()

    @property
    def address(self):
        return f"{self.key.node_id}@127.0.0.1:{self.port}"


class Proxy:
    def __init__(self, lnrr, procs, keys, upstream_address, out, *extra, keyring=None):
        self.port = free_port()
        self.out = out
        self.proc = procs(lnrr, "record", "--listen", f"127.0.0.1:{self.port}", "--upstream", upstream_address,
                          "--keys", keyring or keys.dir, "--out", out, *extra)
        self.proc.wait_lines(lambda lines: any('"listening"' in l for l in lines))

    def dial(self, key, as_node_id):
        return connect(key.priv, PublicKey(bytes.fromhex(as_node_id)), "127.0.0.1", self.port)

    def stop(self):
        self.proc.popen.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr_text()


def recordings(out: Path):
    return sorted(p for p in Path(out).glob("*.pcapng"))


def show_json(lnrr, path):
    r = run(lnrr, "show", "--json", path, check=False)
    assert r.returncode in (0, 1), r.stderr
    return [json.loads(l) for l in r.stdout.splitlines() if l.strip()], r


def messages_in(lines, direction):
    return [bytes.fromhex(l["hex"]) for l in lines if l.get("dir") == direction and "hex" in l]


def events_in(lines, name=None):
    return [l for l in lines if "event" in l and (name is None or l["event"] == name)]


def handshake_pair(proxy, upstream, keys):
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    return a, b


def mixed(seed, count):
    rng = random.Random(seed)
    out = []
    for i in range(count):
        size = rng.choice([rng.randint(0, 64), rng.randint(0, 1400), rng.randint(0, 1400), rng.randint(0, 65533)])
        type_ = rng.choice([32769 + 2 * rng.randint(0, 100), 32768 + 2 * rng.randint(0, 100), 1, 17, 18, 19, 65535])
        out.append(msg(type_, rng.randbytes(size)))
    return out


def test_relay_10000_each_way_and_recording_equals_traffic(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    a, b = handshake_pair(proxy, upstream, keys)
    # Transparent: b sees a's real node id.
    assert b.remote_pubkey.serializeCompressed().hex() == keys("a").node_id

    a_sends = [INIT] + mixed(1, 10_000)
    b_sends = [INIT] + mixed(2, 10_000)
    got = {}

    def pump(conn, outgoing, name):
        t = threading.Thread(target=lambda: [conn.send_message(m) for m in outgoing], daemon=True)
        t.start()
        got[name] = [conn.read_message() for _ in range(len(a_sends if name == "b" else b_sends))]
        t.join(60)

    readers = [threading.Thread(target=pump, args=(a, a_sends, "a")), threading.Thread(target=pump, args=(b, b_sends, "b"))]
    [t.start() for t in readers]
    [t.join(300) for t in readers]
    assert got["b"] == a_sends
    assert got["a"] == b_sends
    a.connection.close()
    b.connection.close()
    time.sleep(0.5)
    proxy.stop()

    [path] = recordings(tmp_path / "rec")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    name = path.name
    assert keys("a").node_id[:8] in name and keys("b").node_id[:8] in name and name.endswith(".pcapng")
    lines, _ = show_json(lnrr, path)
    assert messages_in(lines, "a->b") == a_sends
    assert messages_in(lines, "b->a") == b_sends
    for l in lines:
        if "hex" in l:
            assert l["len"] == len(bytes.fromhex(l["hex"]))
    close = events_in(lines, "close")
    assert close and close[-1]["reason"] == "eof"


def test_messages_before_upstream_is_ready_are_held_in_order(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    # b accepts TCP but delays its handshake answer, so a's first messages wait in the proxy.
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    a = proxy.dial(keys("a"), keys("b").node_id)
    early = [INIT] + [msg(32769, bytes([i]) * 100) for i in range(50)]
    for m in early:
        a.send_message(m)
    b = upstream.wait_connection()
    assert [b.read_message() for _ in early] == early


def test_twenty_concurrent_sessions_each_with_its_own_recording(lnrr, keys, procs, tmp_path):
    keys("b")
    dialers = [keys(f"a{i}") for i in range(20)]  # in the keyring before the proxy loads it
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    results = {}

    def session(i, key):
        conn = proxy.dial(key, keys("b").node_id)
        sent = [INIT] + [msg(32769 + 2 * i, struct.pack(">I", j) + bytes(j % 300)) for j in range(200)]
        for m in sent:
            conn.send_message(m)
        results[key.node_id] = (conn, sent)

    threads = [threading.Thread(target=session, args=(i, k)) for i, k in enumerate(dialers)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    for n in range(1, 21):
        b = upstream.wait_connection(n)
        node = b.remote_pubkey.serializeCompressed().hex()
        conn, sent = results[node]
        assert [b.read_message() for _ in sent] == sent
        b.connection.close()
    time.sleep(0.5)
    proxy.stop()
    files = recordings(tmp_path / "rec")
    assert len(files) == 20
    seen = set()
    for path in files:
        lines, _ = show_json(lnrr, path)
        a_msgs = messages_in(lines, "a->b")
        owner = [nid for nid, (_, sent) in results.items() if sent == a_msgs]
        assert len(owner) == 1, path
        seen.add(owner[0])
    assert seen == set(results)


def test_kill_9_leaves_every_complete_message_readable(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    a, b = handshake_pair(proxy, upstream, keys)
    sent = [INIT] + [msg(32769, struct.pack(">I", i) + bytes(i % 2000)) for i in range(3000)]
    stop = threading.Event()

    def drain():
        try:
            while not stop.is_set():
                b.read_message()
        except Exception:
            pass

    threading.Thread(target=drain, daemon=True).start()
    for m in sent[:1500]:
        a.send_message(m)
    time.sleep(0.3)
    proxy.proc.popen.send_signal(signal.SIGKILL)
    proxy.proc.popen.wait(10)
    stop.set()

    [path] = recordings(tmp_path / "rec")
    lines, r = show_json(lnrr, path)
    got = messages_in(lines, "a->b")
    assert len(got) >= 1000  # the writer kept up with a relay paced by the sockets
    assert got == sent[: len(got)]  # a prefix, byte for byte, in order

    # A cut in the middle of the last block: every complete message still reads, the tail is reported.
    data = path.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-7])
    os.chmod(cut, 0o600)
    lines2, r2 = show_json(lnrr, cut)
    assert messages_in(lines2, "a->b") == got[:-1] or messages_in(lines2, "a->b") == got
    assert "truncated" in (r2.stderr + r2.stdout).lower()


def test_failures_end_only_their_session(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b"), keys("stranger")
    upstream = UpstreamNode(keys("b"))
    out = tmp_path / "rec"
    # Failed handshakes are recorded only on request: this test reads their close reasons.
    proxy = Proxy(lnrr, procs, keys, upstream.address, out, "--record-failed-handshakes")

    # A healthy session that must survive everything below.
    good_a, good_b = handshake_pair(proxy, upstream, keys)
    good_a.send_message(INIT)
    assert good_b.read_message() == INIT

    # 1. Garbage instead of act one.
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(b"\x07" * 50)
        s.settimeout(10)
        assert s.recv(100) == b""

    # 2. Act one for a node whose key the keyring lacks.
    with pytest.raises(Exception):
        proxy.dial(keys("a"), keys("stranger").node_id).read_message()

    # 3. A MAC failure mid-stream: a valid session, then a frame with one flipped bit.
    bad_a, bad_b = proxy.dial(keys("a"), keys("b").node_id), upstream.wait_connection(2)
    bad_a.send_message(INIT)
    assert bad_b.read_message() == INIT
    from pyln.proto.wire import encryptWithAD
    length = encryptWithAD(bad_a.sk, bad_a.nonce(bad_a.sn), b"", struct.pack(">H", 4))
    body = bytearray(encryptWithAD(bad_a.sk, bad_a.nonce(bad_a.sn + 1), b"", b"\x80\x01ab"))
    body[0] ^= 1
    bad_a.connection.sendall(length + bytes(body))
    bad_b.connection.settimeout(10)
    with pytest.raises(Exception):
        bad_b.read_message()

    # The healthy session still relays.
    good_b.send_message(msg(32769, b"still here"))
    assert good_a.read_message() == msg(32769, b"still here")
    good_a.connection.close()
    time.sleep(0.5)

    # 4. Upstream down: a second proxy in the same output folder fronts a port nobody listens on.
    dead = Proxy(lnrr, procs, keys, f"{keys('b').node_id}@127.0.0.1:{free_port()}", out)
    down_a = dead.dial(keys("a"), keys("b").node_id)
    down_a.connection.settimeout(10)
    with pytest.raises(Exception):
        down_a.read_message()
    # ...and the first proxy still serves new sessions.
    again_a, again_b = proxy.dial(keys("a"), keys("b").node_id), upstream.wait_connection(3)
    again_a.send_message(INIT)
    assert again_b.read_message() == INIT
    again_b.connection.close()
    time.sleep(0.5)
    dead.stop()
    proxy.stop()

    reasons = []
    for path in recordings(out):
        lines, _ = show_json(lnrr, path)
        reasons.append(events_in(lines, "close")[-1]["reason"])
    assert sorted(reasons) == sorted(["eof", "eof", "handshake-failure", "handshake-failure", "mac-failure", "upstream-unreachable"])


def test_non_transparent_and_require_transparent(lnrr, keys, procs, tmp_path):
    keys("b")
    keyring = tmp_path / "ring"
    keyring.mkdir(mode=0o700)
    os.link(keys("b").path, keyring / "b.key")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", keyring=keyring)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    proxy_id = run(lnrr, "keys", "id", keyring / "proxy.key").stdout.strip()
    assert b.remote_pubkey.serializeCompressed().hex() == proxy_id != keys("a").node_id
    a.send_message(INIT)
    assert b.read_message() == INIT
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(tmp_path / "rec")
    r = run(lnrr, "show", "--json", "--metadata", path)
    meta = json.loads(r.stdout.splitlines()[0])
    assert meta["transparent"] is False and meta["node_a"] == keys("a").node_id

    strict = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec2", "--require-transparent", keyring=keyring)
    a2 = strict.dial(keys("a"), keys("b").node_id)
    a2.connection.settimeout(10)
    with pytest.raises(Exception):
        a2.read_message()
    time.sleep(0.3)
    strict.stop()
    [path] = recordings(tmp_path / "rec2")
    lines, _ = show_json(lnrr, path)
    assert events_in(lines, "close")[-1]["reason"] == "refused"
    assert len(upstream.accepted) == 1  # the strict proxy never dialed b


def test_record_refuses_missing_upstream_key_and_bad_usage(lnrr, keys, tmp_path):
    keys("a")
    r = run(lnrr, "record", "--listen", "127.0.0.1:0", "--upstream", f"{keys('b').node_id}@127.0.0.1:1",
            "--keys", tmp_path / "nokeys", check=False)
    assert r.returncode == 2 and "nokeys" in r.stderr
    ring = tmp_path / "ring"
    ring.mkdir()
    os.link(keys("a").path, ring / "a.key")
    other = keys("b").node_id
    r = run(lnrr, "record", "--listen", "127.0.0.1:0", "--upstream", f"{other}@127.0.0.1:1", "--keys", ring, check=False)
    assert r.returncode == 2 and other in r.stderr
    r = run(lnrr, "record", "--keys", ring, check=False)
    assert r.returncode == 2 and "--listen" in r.stderr


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_reader_slows_its_writer_and_memory_stays_bounded(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    a, b = handshake_pair(proxy, upstream, keys)
    total = 3000  # 180 MB: far more than any buffer between a and b
    sent = [0]

    def sender():
        try:
            for i in range(total):
                a.send_message(msg(32769, struct.pack(">I", i) + bytes(59_996)))
                sent[0] += 1
        except Exception:
            pass

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    time.sleep(3)  # b reads nothing meanwhile
    stalled_at = sent[0]
    time.sleep(1)
    assert sent[0] == stalled_at < total, "a kept writing although b read nothing"
    rss = proc_rss_kib(proxy.proc.popen.pid)
    assert rss < 150 * 1024, f"proxy RSS {rss} KiB while b is not reading"
    # b catches up and gets everything, in order.
    for i in range(total):
        m = b.read_message()
        assert m[2:6] == struct.pack(">I", i)
    t.join(30)
    assert sent[0] == total


def test_sigterm_closes_open_sessions_with_reason_shutdown(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec")
    a, b = handshake_pair(proxy, upstream, keys)
    a.send_message(INIT)
    assert b.read_message() == INIT
    proxy.stop()  # SIGTERM while the session is open; exits 0
    [path] = recordings(tmp_path / "rec")
    lines, r = show_json(lnrr, path)
    assert r.returncode == 0, r.stderr
    assert events_in(lines, "close")[-1]["reason"] == "shutdown"
    b.connection.settimeout(5)
    with pytest.raises(Exception):
        b.read_message()  # the proxy closed b's side too


def test_routes_front_several_nodes(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b"), keys("c")
    ub, uc = UpstreamNode(keys("b")), UpstreamNode(keys("c"))
    pb, pc = free_port(), free_port()
    proc = procs(lnrr, "record", "--keys", keys.dir, "--out", tmp_path / "rec",
                 "--route", f"127.0.0.1:{pb}={ub.address}", "--route", f"127.0.0.1:{pc}={uc.address}")
    proc.wait_lines(lambda lines: sum('"listening"' in l for l in lines) == 2)
    for port, node, upstream in [(pb, "b", ub), (pc, "c", uc)]:
        a = connect(keys("a").priv, PublicKey(bytes.fromhex(keys(node).node_id)), "127.0.0.1", port)
        far = upstream.wait_connection()
        a.send_message(msg(32769, node.encode()))
        assert far.read_message() == msg(32769, node.encode())
        a.connection.close()
    time.sleep(0.3)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert len(recordings(tmp_path / "rec")) == 2


def test_list_show_filters_and_follow(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    out = tmp_path / "rec"
    proxy = Proxy(lnrr, procs, keys, upstream.address, out)
    a, b = handshake_pair(proxy, upstream, keys)
    a.send_message(INIT)
    b.send_message(INIT)
    b.read_message(), a.read_message()
    [path] = recordings(out)
    follower = procs(lnrr, "show", "--follow", "--json", path)
    for i in range(5):
        a.send_message(msg(32769, bytes([i])))
        b.read_message()
    b.send_message(msg(18, b"\x00\x02\x00\x00"))
    a.read_message()
    follower.wait_lines(lambda lines: sum('"hex"' in l for l in lines) == 8)
    a.connection.close()
    assert follower.wait(20) == 0  # ends by itself at the close event
    time.sleep(0.3)
    proxy.stop()

    only_custom = run(lnrr, "show", "--json", "--type", "custom", path).stdout.splitlines()
    assert [json.loads(l)["type"] for l in only_custom if '"hex"' in l] == [32769] * 5
    b_to_a = run(lnrr, "show", "--json", "--dir", "b->a", path).stdout.splitlines()
    assert [json.loads(l)["name"] for l in b_to_a if '"hex"' in l] == ["init", "ping"]
    human = run(lnrr, "show", path).stdout
    assert "a->b" in human and "custom" in human and "close" in human
    bad = run(lnrr, "show", "--type", "nonsense", path, check=False)
    assert bad.returncode == 2 and "nonsense" in bad.stderr

    listing = run(lnrr, "list", "--json", out).stdout.splitlines()
    [entry] = [json.loads(l) for l in listing]
    assert entry["messages_a_to_b"] == 6 and entry["messages_b_to_a"] == 2
    assert entry["ended"] == "eof" and entry["node_a"] == keys("a").node_id
    assert keys("a").node_id[:8] in run(lnrr, "list", out).stdout


def test_demo_runs_on_its_own(lnrr, tmp_path):
    r = run(lnrr, "demo", "--out", tmp_path / "rec", timeout=60)
    assert "recording:" in r.stdout
    [path] = recordings(tmp_path / "rec")
    assert str(path.name) in r.stdout
    lines, _ = show_json(lnrr, path)
    names = [l["name"] for l in lines if "hex" in l]
    assert names.count("init") == 2 and names.count("ping") == 2 and names.count("pong") == 2
    assert names.count("custom") >= 3
