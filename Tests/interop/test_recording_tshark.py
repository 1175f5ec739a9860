"""Recordings are real pcapng: tshark and capinfos (Wireshark's own readers) open what lnrr writes,
and zlib's CRC-32 agrees with every packet's epb_hash."""
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from conftest import run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings


def tshark_bin(name):
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} is not installed: tools/test installs it (apt-get install tshark)")
    return path


def record_session(lnrr, keys, procs, out):
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, out)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a_sends = [INIT, msg(32769, b"custom odd"), msg(18, b"\x00\x04\x00\x00"), msg(32768, bytes(300)), msg(65535, b"\xff" * 40000)]
    b_sends = [INIT, msg(19, bytes(6)), msg(32771, b"reply"), msg(1, bytes(32) + b"\x00\x02hi")]
    for m in a_sends:
        a.send_message(m)
    assert [b.read_message() for _ in a_sends] == a_sends
    for m in b_sends:
        b.send_message(m)
    assert [a.read_message() for _ in b_sends] == b_sends
    a.connection.close()
    time.sleep(0.3)
    proxy.stop()
    [path] = recordings(out)
    return path, a_sends, b_sends


def tshark_packets(path):
    r = subprocess.run([tshark_bin("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.interface_id",
                        "-e", "frame.packet_flags_direction", "-e", "data.data"], capture_output=True, text=True, timeout=60)
    return r, [line.split("\t") for line in r.stdout.splitlines() if line.strip()]


def epb_hashes(path):
    """(data, stored CRC) of every Enhanced Packet Block on interface 0, parsed here from the spec."""
    blob = Path(path).read_bytes()
    out, at = [], 0
    while at + 12 <= len(blob):
        btype, blen = struct.unpack_from("<II", blob, at)
        if at + blen > len(blob):
            break
        if btype == 6:
            iface, _, _, caplen, _ = struct.unpack_from("<IIIII", blob, at + 8)
            data = blob[at + 28: at + 28 + caplen]
            opt = at + 28 + (caplen + 3) // 4 * 4
            stored = None
            while opt + 4 <= at + blen - 4:
                code, length = struct.unpack_from("<HH", blob, opt)
                if code == 0:
                    break
                if code == 3 and blob[opt + 4] == 2:  # epb_hash, algorithm 2 = CRC-32
                    stored = int.from_bytes(blob[opt + 5: opt + 9], "big")
                opt += 4 + (length + 3) // 4 * 4
            if iface == 0:
                out.append((data, stored))
        at += blen
    return out


def test_tshark_reads_every_message_and_direction(lnrr, keys, procs, tmp_path):
    path, a_sends, b_sends = record_session(lnrr, keys, procs, tmp_path / "rec")
    r, packets = tshark_packets(path)
    assert r.returncode == 0, r.stderr
    messages = [(p[1], bytes.fromhex(p[2])) for p in packets if p[0] == "0"]
    events = [json.loads(bytes.fromhex(p[2])) for p in packets if p[0] == "1"]
    assert len(messages) == len(a_sends) + len(b_sends)
    # Direction flags: inbound (0x1) is a->b, outbound (0x2) is b->a.
    assert [d for f, d in messages if int(f, 16) == 1] == a_sends
    assert [d for f, d in messages if int(f, 16) == 2] == b_sends
    names = [e["event"] for e in events]
    assert names[0] == "session-start" and "handshake" in names and names[-1] == "close"

    caps = subprocess.run([tshark_bin("capinfos"), str(path)], capture_output=True, text=True, timeout=60)
    assert caps.returncode == 0, caps.stderr
    assert f"Number of packets:   {len(packets)}" in caps.stdout
    assert "nanoseconds" in caps.stdout


def test_epb_hash_is_zlib_crc32(lnrr, keys, procs, tmp_path):
    path, a_sends, b_sends = record_session(lnrr, keys, procs, tmp_path / "rec")
    hashes = epb_hashes(path)
    assert len(hashes) == len(a_sends) + len(b_sends)
    for data, stored in hashes:
        assert stored == zlib.crc32(data)


def test_truncated_copy_still_opens(lnrr, keys, procs, tmp_path):
    path, a_sends, b_sends = record_session(lnrr, keys, procs, tmp_path / "rec")
    data = Path(path).read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) - 30])  # inside the final close event
    r, packets = tshark_packets(cut)
    assert len([p for p in packets if p[0] == "0"]) == len(a_sends) + len(b_sends)
    assert "cut short" in r.stderr.lower() or r.returncode != 0
    show = run(lnrr, "show", "--json", cut, check=False)
    assert show.returncode == 1
    assert "truncated tail" in show.stderr
    assert len([l for l in show.stdout.splitlines() if '"hex"' in l]) == len(a_sends) + len(b_sends)
