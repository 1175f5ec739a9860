"""`lnrr peer` against pyln-proto, Core Lightning's own BOLT 8 implementation, in both roles.

pyln-proto is the independent truth here: if lnrr's handshake, cipher, key rotation or framing were
wrong, pyln would fail to decrypt (or lnrr would), and the echoed bytes would not match.
"""
import hashlib
import os
import random
import socket
import stat
import struct
import threading
import time

import pytest
from pyln.proto.wire import LightningServerSocket, PrivateKey, PublicKey, connect

from conftest import run, wait_for_port, free_port

MESSAGES_EACH_WAY = 2500


def msg(type_: int, payload: bytes = b"") -> bytes:
    return struct.pack(">H", type_) + payload


def init_msg() -> bytes:
    return msg(16, struct.pack(">H", 0) + struct.pack(">H", 0))


def mixed_messages(seed: int, count: int) -> list[bytes]:
    """Custom odd-typed messages of mixed sizes from 2 bytes (type only) to BOLT 8's 65535."""
    rng = random.Random(seed)
    sizes = [2, 3, 65535, 65534, 1000, 18, 16]
    while len(sizes) < count:
        sizes.append(rng.choice([rng.randint(2, 64), rng.randint(65, 1500), rng.randint(1501, 65535)]))
    out = []
    for i, size in enumerate(sizes[:count]):
        type_ = 32769 + 2 * (i % 1000)  # odd custom types: ignorable by anyone who does not echo
        out.append(struct.pack(">H", type_) + rng.randbytes(size - 2))
    return out


def read_non_ping(conn):
    while True:
        m = conn.read_message()
        if m[:2] != b"\x00\x12":
            return m


def exchange_echo(conn, messages):
    """Send every message while reading the echoes concurrently; return what came back."""
    errors = []

    def sender():
        try:
            for m in messages:
                conn.send_message(m)
        except Exception as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    echoed = [conn.read_message() for _ in messages]
    t.join(timeout=60)
    assert not errors, errors
    return echoed


def wait_listening(proc):
    """The peer serves one connection, so readiness is read from its output, not probed with a connect."""
    proc.wait_lines(lambda lines: any('"listening"' in l for l in lines))


def digest_lines(proc, direction):
    return [
        (l["type"], l["len"], l.get("sha256") or hashlib.sha256(bytes.fromhex(l["hex"])).hexdigest())
        for l in proc.json_lines()
        if l.get("dir") == direction and l.get("type", 0) >= 32768
    ]


def expected_digests(messages):
    return [(int.from_bytes(m[:2], "big"), len(m), hashlib.sha256(m).hexdigest()) for m in messages]


def test_pyln_initiator_to_lnrr_responder(lnrr, keys, procs):
    port = free_port()
    peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--listen", f"127.0.0.1:{port}", "--echo", "--hex-limit", "32")
    wait_listening(peer)

    conn = connect(keys("pyln").priv, PublicKey(bytes.fromhex(keys("lnrr").node_id)), "127.0.0.1", port)
    their_init = conn.read_message()
    assert their_init[:2] == b"\x00\x10", their_init.hex()
    conn.send_message(init_msg())

    messages = mixed_messages(1, MESSAGES_EACH_WAY)
    echoed = exchange_echo(conn, messages)
    assert echoed == messages  # every byte, in order, both directions; keys rotated ~5 times each way
    conn.connection.close()

    assert peer.wait(timeout=30) == 0, peer.stderr_text()
    lines = peer.json_lines()
    assert lines[0]["event"] == "listening" and lines[0]["node_id"] == keys("lnrr").node_id
    assert lines[1] == {"event": "connected", "node_id": keys("pyln").node_id}
    assert digest_lines(peer, "in") == expected_digests(messages)
    assert digest_lines(peer, "out") == expected_digests(messages)
    assert lines[-1]["event"] == "end" and lines[-1]["ok"] is True


def test_lnrr_initiator_to_pyln_responder(lnrr, keys, procs):
    server = LightningServerSocket(keys("pyln").priv)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    scripted = [msg(32801, b"first"), msg(32803, b"second"), msg(1, b"\x00" * 32 + b"\x00\x04warn")]
    peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--connect", f"{keys('pyln').node_id}@127.0.0.1:{port}",
                 "--echo", "--hex-limit", "32", *sum((["--send", m.hex()] for m in scripted), []))
    server.settimeout(20)
    conn, _ = server.accept()
    assert conn.remote_pubkey.serializeCompressed().hex() == keys("lnrr").node_id
    conn.send_message(init_msg())
    assert conn.read_message()[:2] == b"\x00\x10"
    # --send messages come after init, in order.
    assert [conn.read_message() for _ in scripted] == scripted

    messages = mixed_messages(2, MESSAGES_EACH_WAY)
    echoed = exchange_echo(conn, messages)
    assert echoed == messages
    conn.connection.close()
    server.close()
    assert peer.wait(timeout=30) == 0, peer.stderr_text()
    assert digest_lines(peer, "in") == expected_digests(messages)


def start_listening_peer(lnrr, keys, procs, *extra):
    port = free_port()
    peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--listen", f"127.0.0.1:{port}", *extra)
    wait_listening(peer)
    conn = connect(keys("pyln").priv, PublicKey(bytes.fromhex(keys("lnrr").node_id)), "127.0.0.1", port)
    assert conn.read_message()[:2] == b"\x00\x10"
    conn.send_message(init_msg())
    return peer, conn


def test_ping_pong_and_odd_even_rules(lnrr, keys, procs):
    peer, conn = start_listening_peer(lnrr, keys, procs)
    conn.send_message(msg(18, struct.pack(">HH", 10, 3) + b"abc"))
    assert conn.read_message() == msg(19, struct.pack(">H", 10) + b"\x00" * 10)
    # num_pong_bytes >= 65532 means "do not answer": the next pong must answer the next ping.
    conn.send_message(msg(18, struct.pack(">HH", 65532, 0)))
    conn.send_message(msg(32771, b"unknown odd custom: ignored"))
    conn.send_message(msg(18, struct.pack(">HH", 2, 0)))
    assert conn.read_message() == msg(19, struct.pack(">H", 2) + b"\x00\x00")
    # An unknown even type: BOLT 1 says fail the connection.
    conn.send_message(msg(32770, b"unknown even"))
    conn.connection.settimeout(10)
    with pytest.raises(Exception):
        conn.read_message()
    assert peer.wait(timeout=20) == 1
    assert "unknown even" in peer.stderr_text()
    end = peer.json_lines()[-1]
    assert end["event"] == "end" and end["ok"] is False


def test_exit_after_and_idle_timeout(lnrr, keys, procs):
    peer, conn = start_listening_peer(lnrr, keys, procs, "--exit-after", "3")
    conn.send_message(msg(32773, b"x"))
    conn.send_message(msg(32775, b"y"))
    assert peer.wait(timeout=20) == 0, peer.stderr_text()
    assert [l["type"] for l in peer.json_lines() if l.get("dir") == "in"] == [16, 32773, 32775]

    peer, conn = start_listening_peer(lnrr, keys, procs, "--idle-timeout", "0.5")
    started = time.monotonic()
    assert peer.wait(timeout=20) == 0, peer.stderr_text()
    assert time.monotonic() - started < 10


def test_send_file_and_bad_input(lnrr, keys, procs, tmp_path):
    f = tmp_path / "msgs.txt"
    f.write_text("# scripted\n8001aa\n\n8003bbcc\n")
    peer, conn = start_listening_peer(lnrr, keys, procs, "--send-file", f)
    assert conn.read_message() == bytes.fromhex("8001aa")
    assert conn.read_message() == bytes.fromhex("8003bbcc")
    conn.connection.close()
    assert peer.wait(timeout=20) == 0

    bad = run(lnrr, "peer", "--key", keys("lnrr").path, "--listen", "127.0.0.1:1", "--send", "zz", check=False)
    assert bad.returncode == 2 and "not hex" in bad.stderr
    both = run(lnrr, "peer", "--key", keys("lnrr").path, check=False)
    assert both.returncode == 2 and "--listen" in both.stderr
    addr = run(lnrr, "peer", "--key", keys("lnrr").path, "--connect", "nothex@127.0.0.1:9735", check=False)
    assert addr.returncode == 2 and "node id" in addr.stderr.lower()


def test_wrong_node_id_fails_handshake(lnrr, keys, procs):
    port = free_port()
    peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--listen", f"127.0.0.1:{port}")
    wait_listening(peer)
    with pytest.raises(Exception):
        # pyln dials expecting another node's key: act two cannot authenticate.
        c = connect(keys("pyln").priv, PublicKey(bytes.fromhex(keys("other").node_id)), "127.0.0.1", port)
        c.read_message()
    assert peer.wait(timeout=20) == 1
