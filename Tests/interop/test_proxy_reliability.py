"""Issue #14, proxy side: nothing a peer or a control client does makes `lnrr record` keep files,
threads or memory it should not. The other ends are pyln-proto nodes and raw sockets."""
import json
import socket
import struct
import time

from test_proxy_pyln import INIT, Proxy, UpstreamNode, events_in, msg, recordings, show_json


def proc_status(pid: int) -> dict:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {"rss_kib": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"])}


class Control:
    """One connection to the control socket, one request at a time (answers end with a blank line)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(str(path))
        self.buf = b""
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.s.sendall(json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}).encode() + b"\n")
        while b"\n\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "control socket closed"
            self.buf += chunk
        answer, _, self.buf = self.buf.partition(b"\n\n")
        reply = json.loads(answer)
        assert reply["id"] == self.next_id
        return reply


def expect_cut_without_relay(a, timeout: float) -> None:
    """a's connection ends (or errs) without a message relayed: the upstream never came up."""
    a.connection.settimeout(timeout)
    try:
        a.read_message()
        raise AssertionError("the proxy relayed with no upstream")
    except (ConnectionError, OSError, ValueError):
        pass


def test_failed_handshakes_leave_no_file_and_no_thread(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    out = tmp_path / "rec"
    sock = tmp_path / "ctl.sock"
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, out, "--control", sock, "--log-level", "notice")
    pid = proxy.proc.popen.pid
    time.sleep(0.5)
    threads_idle = proc_status(pid)["threads"]

    # A flood of connections that open and close, some with garbage or a partial act one, half of
    # them reset (SO_LINGER 0).
    flood = 600
    for i in range(flood):
        s = socket.create_connection(("127.0.0.1", proxy.port))
        if i % 3 == 1:
            s.sendall(b"\x07" * 50)  # garbage act one
        elif i % 3 == 2:
            s.sendall(b"\x00" + b"\x02" * 20)  # the start of an act one, then gone
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        s.close()
    threads_flood = proc_status(pid)["threads"]

    # A real session among them is still recorded.
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT)
    assert b.read_message() == INIT

    control = Control(sock)
    deadline = time.monotonic() + 30
    while True:
        result = control.call("listsessions")["result"]
        if result["failed_handshakes"] >= flood or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result["failed_handshakes"] == flood
    assert len(result["sessions"]) == 1
    assert len(list(out.iterdir())) == 1, list(out.iterdir())  # the live session's, nothing for the flood
    a.connection.close()
    time.sleep(0.5)
    proxy.stop()
    assert len(recordings(out)) == 1, recordings(out)
    lines, _ = show_json(lnrr, recordings(out)[0])
    assert events_in(lines, "close")[-1]["reason"] == "eof"
    # No writer thread per connection: the flood did not add threads.
    assert threads_flood <= threads_idle + 2, (threads_idle, threads_flood)
    summary = f"{flood} connections ended before their handshake completed"
    deadline = time.monotonic() + 10  # the log is read by a thread: its last lines may lag the exit
    while summary not in proxy.proc.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = proxy.proc.stderr_text()
    assert log.count("before its handshake completed (not recorded)") == flood
    assert summary in log


def test_record_failed_handshakes_keeps_the_forensic_files(lnrr, keys, procs, tmp_path):
    keys("b")
    out = tmp_path / "rec"
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, out, "--record-failed-handshakes")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(b"\x07" * 50)
            s.settimeout(10)
            assert s.recv(100) == b""
    time.sleep(0.5)
    proxy.stop()
    files = recordings(out)
    assert len(files) == 3
    for path in files:
        lines, _ = show_json(lnrr, path)
        assert events_in(lines, "close")[-1]["reason"] == "handshake-failure"


def test_held_init_is_not_delivered_when_the_upstream_dial_fails(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    out = tmp_path / "rec"
    # An upstream whose accept queue is full: the dial hangs until its 10 s timeout, so a's init is
    # surely held when it fails (a refused port fails before the init arrives).
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    while True:
        c = socket.socket()
        c.settimeout(0.5)
        try:
            c.connect(full.getsockname())
            fillers.append(c)
        except OSError:
            c.close()
            break
        assert len(fillers) < 16, "the accept queue never filled"
    dead = f"{keys('b').node_id}@127.0.0.1:{full.getsockname()[1]}"
    proxy = Proxy(lnrr, procs, keys, dead, out)
    a = proxy.dial(keys("a"), keys("b").node_id)
    a.send_message(INIT)
    expect_cut_without_relay(a, 30)
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(out)
    lines, _ = show_json(lnrr, path)
    records = [l for l in lines if l.get("hex") == INIT.hex()]
    assert len(records) == 1, lines
    assert "delivery: none" in records[0]["comments"]
    assert events_in(lines, "close")[-1]["reason"] == "upstream-unreachable"
    for c in fillers:
        c.close()
    full.close()


def test_inject_towards_a_peer_that_does_not_read_answers_busy(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    sock = tmp_path / "ctl.sock"
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--control", sock, "--sync", "none")
    pid = proxy.proc.popen.pid
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT); assert b.read_message() == INIT
    b.send_message(INIT); assert a.read_message() == INIT
    time.sleep(0.3)
    rss_before = proc_status(pid)["rss_kib"]

    # b stops reading; 2,000 injections of 65 KB each go towards it.
    control = Control(sock)
    big = msg(32769, bytes(range(256)) * 253 + b"\x00" * 32).hex()  # 65,002 bytes
    accepted = busy = 0
    for _ in range(2000):
        reply = control.call("inject", session=1, direction="a->b", msg=big)
        if "error" in reply:
            assert reply["error"]["code"] == 1006, reply
            assert "not reading" in reply["error"]["message"]
            busy += 1
        else:
            accepted += 1
    rss_after = proc_status(pid)["rss_kib"]
    # Kernel socket buffers take some; then every injection is refused rather than kept in lnrr.
    assert accepted * 65_002 < 32 * 1024 * 1024, accepted
    assert busy >= 1500, (accepted, busy)
    assert rss_after - rss_before < 48 * 1024, (rss_before, rss_after)

    # b reads what was accepted, in order, and the side is writable again: injections go through.
    b.connection.settimeout(30)
    for _ in range(accepted):
        assert b.read_message().hex() == big
    deadline = time.monotonic() + 10
    while True:
        reply = control.call("inject", session=1, direction="a->b", msg="8001cafe")
        if "result" in reply or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "result" in reply, reply
    assert b.read_message() == bytes.fromhex("8001cafe")
    proxy.stop()


def test_ended_sessions_are_freed(lnrr, keys, procs, tmp_path):
    """Every ended session is freed: `sessions_in_memory` (session objects alive) falls back to 0.
    The cycle this guards against kept each session with its buffers for the life of the process."""
    keys("a"), keys("b")
    sock = tmp_path / "ctl.sock"
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--control", sock)
    for i in range(75):  # whole sessions: b gets the init before a leaves
        a = proxy.dial(keys("a"), keys("b").node_id)
        a.send_message(INIT)
        assert upstream.wait_connection(i + 1).read_message() == INIT
        a.connection.close()
    for _ in range(75):  # a leaves at once, often before the upstream connection is even up
        a = proxy.dial(keys("a"), keys("b").node_id)
        a.send_message(INIT)
        a.connection.close()
    for _ in range(50):  # and connections that never authenticate
        socket.create_connection(("127.0.0.1", proxy.port)).close()
    control = Control(sock)
    deadline = time.monotonic() + 30
    while True:
        result = control.call("listsessions")["result"]
        if (result["sessions"] == [] and result["sessions_in_memory"] == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result["sessions"] == [] and result["sessions_in_memory"] == 0, result
    proxy.stop()


def test_upstream_failures_are_said_in_words_with_the_likely_cause(lnrr, keys, procs, tmp_path):
    """Issue 12 items 5 and 6 on the proxy's own dial: the close reason names the address and the
    cause in words (no NIO internals), and a node that cuts act two is said to be the wrong node id."""
    from test_cli_pyln import wrong_key_listener
    keys("a"), keys("b"), keys("c")
    # b listens, but the proxy is told the upstream is c: b's pyln-proto closes during act two.
    port = wrong_key_listener(keys("b"))
    out = tmp_path / "rec"
    proxy = Proxy(lnrr, procs, keys, f"{keys('c').node_id}@127.0.0.1:{port}", out)
    a = proxy.dial(keys("a"), keys("c").node_id)
    expect_cut_without_relay(a, 15)
    # A refused port: the reason is a sentence with the address.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = closed.getsockname()[1]
    closed.close()
    proxy.stop()
    [path] = recordings(out)
    lines, _ = show_json(lnrr, path)
    close = events_in(lines, "close")[-1]
    assert close["reason"] == "handshake-failure", close
    assert f"likely cause: {keys('c').node_id} is not the node id of the node at 127.0.0.1:{port}" in close["detail"], close

    out2 = tmp_path / "rec2"
    proxy = Proxy(lnrr, procs, keys, f"{keys('b').node_id}@127.0.0.1:{refused}", out2)
    a = proxy.dial(keys("a"), keys("b").node_id)
    expect_cut_without_relay(a, 15)
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(out2)
    lines, _ = show_json(lnrr, path)
    close = events_in(lines, "close")[-1]
    assert close["reason"] == "upstream-unreachable", close
    assert close["detail"].startswith(f"cannot connect to 127.0.0.1:{refused}: connection refused"), close
    assert "SingleConnectionFailure" not in close["detail"] and "errno" not in close["detail"], close
