"""Newcomer stumbling blocks of the command line (issue #12, items 3, 4, 5, 6, 10 and 13), each
checked against what an independent party did: pyln-proto nodes on the other end, a port held by
Python, a shell that runs commands exactly as typed."""
import json
import shlex
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from pyln.proto.wire import LightningServerSocket

from conftest import REPO, free_port, run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings

EXAMPLE = REPO / "recordings" / "examples" / "custommsg-during-closing.pcapng"


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs a command line through /bin/sh, as a user types it."""
    return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- 3: a misspelt option is reported as such, first ------------------------------------------

def test_misspelt_options_are_reported_before_anything_else(lnrr, tmp_path):
    r = run(lnrr, "replay", "x.pcapng", "--as", "a", "--conect", "02" + "aa" * 32 + "@127.0.0.1:9735", "--key", "k", check=False)
    assert r.returncode == 2
    assert "Unknown option '--conect'" in r.stderr and "did you mean '--connect'?" in r.stderr.lower(), r.stderr
    assert "give exactly one" not in r.stderr
    r = run(lnrr, "record", "--listn", "127.0.0.1:0", check=False)
    assert r.returncode == 2
    assert "Unknown option '--listn'" in r.stderr and "did you mean '--listen'?" in r.stderr.lower(), r.stderr
    assert "--keys" not in r.stderr.splitlines()[0]
    r = run(lnrr, "rules", "check", "--jsn", "rules.yaml", check=False)
    assert r.returncode == 2 and "did you mean '--json'?" in r.stderr.lower() and "lnrr rules check --help" in r.stderr, r.stderr
    # Correct options still reach the command's own checks.
    r = run(lnrr, "replay", "x.pcapng", "--as", "a", "--key", "k", check=False)
    assert r.returncode == 2 and "give exactly one" in r.stderr


# --- 4: directions that need no quoting -------------------------------------------------------

def test_directions_typed_unquoted_in_a_shell(lnrr, tmp_path):
    quoted = run(lnrr, "show", "--json", "--dir", "a->b", EXAMPLE).stdout
    r = sh(f"{shlex.quote(lnrr)} show --json --dir a2b {shlex.quote(str(EXAMPLE))}", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == quoted
    dirs = {json.loads(l).get("dir") for l in r.stdout.splitlines()} - {None}
    assert dirs == {"a->b"}
    b2a = sh(f"{shlex.quote(lnrr)} show --json --dir b2a {shlex.quote(str(EXAMPLE))}", tmp_path)
    assert {json.loads(l).get("dir") for l in b2a.stdout.splitlines()} - {None} == {"b->a"}
    assert list(tmp_path.iterdir()) == []  # no stray files from a redirection
    r = run(lnrr, "show", "--dir", "sideways", EXAMPLE, check=False)
    assert r.returncode == 2 and "a2b" in r.stderr

    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - match: {dir: b2a, type: ping}\n    action: {inject: {hex: '8001', dir: a2b}}\n")
    assert run(lnrr, "rules", "check", rules).returncode == 0
    rules.unlink()


# --- 5 and 6: network errors in words, once, with the address ---------------------------------

def test_network_errors_name_the_address_and_what_to_do(lnrr, keys, tmp_path):
    keys("a"), keys("b")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        r = run(lnrr, "record", "--listen", f"127.0.0.1:{port}", "--upstream", f"{keys('b').node_id}@127.0.0.1:1",
                "--keys", keys.dir, "--no-recording", check=False)
        assert r.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in r.stderr, r.stderr
        assert "bind(descriptor" not in r.stderr and "errno" not in r.stderr
        r = run(lnrr, "peer", "--key", keys("a").path, "--listen", f"127.0.0.1:{port}", check=False)
        assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}: the address is already in use" in r.stderr, r.stderr
    finally:
        held.close()

    closed = free_port()
    r = run(lnrr, "peer", "--key", keys("a").path, "--connect", f"{keys('b').node_id}@127.0.0.1:{closed}", check=False)
    assert r.returncode == 2
    assert r.stderr.strip() == f"cannot connect to 127.0.0.1:{closed}: connection refused: nothing listens there; start the node first, or check the port"
    r = run(lnrr, "peer", "--key", keys("a").path, "--connect", f"{keys('b').node_id}@[::1]:{closed}", check=False)
    assert r.returncode == 2 and f"cannot connect to [::1]:{closed}: " in r.stderr and "SingleConnectionFailure" not in r.stderr, r.stderr

    # replay: said once, in the verdict line, not again on stderr.
    r = run(lnrr, "replay", EXAMPLE, "--as", "a", "--connect", f"{keys('b').node_id}@127.0.0.1:{closed}",
            "--key", keys("a").path, "--connect-timeout", "10", check=False)
    assert r.returncode == 2
    both = r.stdout + r.stderr
    assert both.count(f"cannot connect to 127.0.0.1:{closed}") == 1, both
    assert "SingleConnectionFailure" not in both and "[IPv4]" not in both


def test_addresses_print_the_same_in_logs_and_json(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    upstream = UpstreamNode(keys("b"))
    proc = procs(lnrr, "record", "--listen", "[::1]:0", "--upstream", upstream.address, "--keys", keys.dir, "--no-recording")
    proc.wait_lines(lambda lines: any('"listening"' in l for l in lines))
    [listening] = [l for l in proc.json_lines() if l.get("event") == "listening"]
    address = listening["address"]
    assert address.startswith("[::1]:") and int(address.rsplit(":", 1)[1]) > 0, listening
    deadline = time.monotonic() + 20
    while f"listen={address}" not in proc.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"listen={address}" in proc.stderr_text() and "[IPv6]" not in proc.stderr_text(), proc.stderr_text()
    # The embedded peer and a listening replay print their listening line the same way.
    peer = procs(lnrr, "peer", "--key", keys("a").path, "--listen", "[::1]:0")
    peer.wait_lines(lambda lines: any('"listening"' in l for l in lines))
    [line] = [l for l in peer.json_lines() if l.get("event") == "listening"]
    assert line["address"].startswith("[::1]:") and int(line["address"].rsplit(":", 1)[1]) > 0, line
    replay = procs(lnrr, "replay", EXAMPLE, "--as", "b", "--listen", "[::1]:0", "--key", keys("b").path, "--json")
    replay.wait_lines(lambda lines: any('"listening"' in l for l in lines))
    [line] = [l for l in replay.json_lines() if l.get("event") == "listening"]
    assert line["address"].startswith("[::1]:") and int(line["address"].rsplit(":", 1)[1]) > 0, line


def wrong_key_listener(key):
    """A pyln-proto node that accepts one connection; the handshake fails when the dialler expects
    another node id (pyln closes during act two)."""
    server = LightningServerSocket(key.priv)
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve():
        try:
            conn, _ = server.accept()
            conn.connection.close()
        except Exception:
            pass  # the expected handshake failure
        finally:
            server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def test_wrong_node_id_gets_the_likely_cause(lnrr, keys, tmp_path):
    keys("a"), keys("b"), keys("c")
    port = wrong_key_listener(keys("b"))
    # a dials b's address believing it is c.
    r = run(lnrr, "peer", "--key", keys("a").path, "--connect", f"{keys('c').node_id}@127.0.0.1:{port}", check=False)
    assert r.returncode != 0
    assert "act two" in r.stderr and f"likely cause: {keys('c').node_id} is not the node id of the node at 127.0.0.1:{port}" in r.stderr, r.stderr

    port = wrong_key_listener(keys("b"))
    r = run(lnrr, "replay", EXAMPLE, "--as", "a", "--connect", f"{keys('c').node_id}@127.0.0.1:{port}",
            "--key", keys("a").path, "--connect-timeout", "10", check=False)
    assert r.returncode == 2
    assert f"is not the node id of the node at 127.0.0.1:{port}" in r.stdout + r.stderr, (r.stdout, r.stderr)


# --- 10: lnrr show's text view ------------------------------------------------------------------

def test_show_text_indexes_and_phase_changes_once(lnrr):
    text = run(lnrr, "show", EXAMPLE).stdout
    lines = [l for l in text.splitlines() if l.lstrip().startswith("#")]
    rows = run(lnrr, "show", "--json", EXAMPLE).stdout.splitlines()
    indexes = [json.loads(l)["i"] for l in rows if '"i":' in l]
    assert [int(l.split()[0][1:]) for l in lines] == indexes
    # Each phase change once: on its own `--` line, not repeated in the message's notes.
    assert text.count("e659..cc2d: opening -> channel") == 1, text
    assert not any("phase e659" in l for l in lines)


def error_message(text: bytes) -> bytes:
    return msg(17, b"\x00" * 32 + struct.pack(">H", len(text)) + text)


def test_show_text_error_text_remote_addr_and_hook_verdict(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    hook = tmp_path / "hook.py"
    hook.write_text('import json, sys\nreq = json.loads(sys.stdin.read())\n'
                    'print(json.dumps({"result": "drop" if req["payload"].endswith("02") else "continue"}))\n')
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--custommsg-hook", f"{sys.executable} {hook}")
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    # b's init carries remote_addr (BOLT 1 init_tlvs type 3): IPv4 127.0.0.1 port 9735.
    b_init = INIT + bytes([3, 7, 1, 127, 0, 0, 1]) + struct.pack(">H", 9735)
    a.send_message(INIT); b.read_message()
    b.send_message(b_init); assert a.read_message() == b_init
    a.send_message(msg(32769, b"\x01")); assert b.read_message() == msg(32769, b"\x01")
    a.send_message(msg(32769, b"\x02"))                                     # dropped by the hook
    a.send_message(msg(18, b"\x00\x00\x00\x00")); assert b.read_message()[:2] == b"\x00\x12"
    b.send_message(error_message(b"internal error: channel unknown"))
    assert a.read_message()[:2] == b"\x00\x11"
    proxy.stop()
    [path] = recordings(tmp_path / "rec")

    text = run(lnrr, "show", path, check=False).stdout
    rows = text.splitlines()
    custom = [l for l in rows if " custom " in l]
    assert len(custom) == 2
    assert custom[0].lstrip().startswith("#2") and "hook: continue" in custom[0], text
    assert custom[1].lstrip().startswith("#3") and "hook: drop" in custom[1], text
    assert not any("-- hook" in l for l in rows), text
    [err] = [l for l in rows if " error " in l]
    assert '"internal error: channel unknown"' in err
    [b_init_line] = [l for l in rows if "b->a" in l and " init " in l]
    assert "remote_addr 127.0.0.1:9735" in b_init_line
    decoded = run(lnrr, "show", "--decode", path, check=False).stdout
    assert "address: 127.0.0.1:9735" in decoded and 'data: "internal error: channel unknown"' in decoded

    # --json keeps the bytes as hex.
    lines = [json.loads(l) for l in run(lnrr, "show", "--json", path, check=False).stdout.splitlines()]
    [e] = [l for l in lines if l.get("type") == 17]
    assert b"internal error: channel unknown".hex() in e["hex"]


# --- 13: lnrr ctl -------------------------------------------------------------------------------

def test_ctl_reports_malformed_and_unknown_parameters(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    sock = tmp_path / "ctl.sock"
    upstream = UpstreamNode(keys("b"))
    proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "rec", "--control", sock)
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection()
    a.send_message(INIT); b.read_message()
    b.send_message(INIT); a.read_message()
    ctl = f"{shlex.quote(lnrr)} ctl --socket {shlex.quote(str(sock))}"

    r = sh(f"{ctl} sendcustommsg node_id=02abcd msg=8001", tmp_path)
    assert r.returncode == 2 and "`node_id` is malformed" in r.stderr and "66 hex" in r.stderr, r.stderr
    r = sh(f"{ctl} sendcustommsg nodeid={keys('b').node_id} msg=8001", tmp_path)
    assert r.returncode == 2 and "unknown parameter 'nodeid'" in r.stderr and "did you mean 'node_id'?" in r.stderr, r.stderr
    error = json.loads(r.stdout)
    assert error["code"] == -32602
    # Typed as printed, unquoted: direction=b2a.
    r = sh(f"{ctl} inject session=1 direction=b2a msg=8003beef", tmp_path)
    assert r.returncode == 0, r.stderr
    assert a.read_message() == bytes.fromhex("8003beef")
    r = sh(f"{ctl} inject session=7 direction=a2b msg=8001", tmp_path)
    assert r.returncode == 1 and "no session 7" in r.stderr and json.loads(r.stdout)["code"] == 1001
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctl.sock", "keys", "rec"]
