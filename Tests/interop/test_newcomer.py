"""What a newcomer meets first (issue 12): a fresh copy builds and runs, keys, durations, listening
lines, peer --keep-listening, command-word errors, `lnrr list`'s header, file errors, the man page.

Independent truths: pyln-proto (Core Lightning's BOLT 8) dials and answers; capinfos (Wireshark)
reads the recordings' metadata; the operating system reports modes and bound ports.
"""
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest
from pyln.proto.wire import PrivateKey, PublicKey, connect

from conftest import REPO, free_port, run
from test_examples import repository_copy


def init_msg() -> bytes:
    return struct.pack(">HHH", 16, 0, 0)


def listening(proc, timeout=30.0) -> dict:
    proc.wait_lines(lambda lines: any('"listening"' in l for l in lines), timeout=timeout)
    return next(l for l in proc.json_lines() if l.get("event") == "listening")


def pyln_session(key, node_id: str, port: int):
    conn = connect(key.priv, PublicKey(bytes.fromhex(node_id)), "127.0.0.1", port)
    assert conn.read_message()[:2] == b"\x00\x10"
    conn.send_message(init_msg())
    return conn


# ---------------------------------------------------------------------------------------------
# Self-contained: a copy of the repository with nothing beside it builds, checks and runs.


def test_fresh_copy_with_no_siblings_builds_and_runs_the_demo(tmp_path):
    """The copy has no sibling folders: the generator check, a build of its own
    (no .build reused), the demo through tools/lnrr, and the pyln CSV test all run inside it."""
    parent = tmp_path / "alone"
    parent.mkdir()
    copy = parent / "lnrr"
    copy.mkdir()
    repository_copy(copy)
    assert sorted(p.name for p in parent.iterdir()) == ["lnrr"]
    assert not (copy / ".build").exists()
    env = dict(os.environ)
    env.pop("LNRR_BOLT_CSV", None)

    r = subprocess.run(["tools/check-generated"], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    started = time.monotonic()
    r = subprocess.run(["tools/lnrr", "demo", "--out", "demo-recordings"], cwd=copy, env=env, capture_output=True,
                       text=True, timeout=1500)
    seconds = time.monotonic() - started
    print(f"fresh copy: build + demo in {seconds:.0f} s")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "recording: demo-recordings/" in r.stdout
    assert "custom" in r.stdout and "ping" in r.stdout
    # The demo's header names the bound ports, never port 0.
    assert re.search(r"dialled the proxy at 127\.0\.0\.1:[1-9]\d*", r.stdout)
    assert re.search(r"listened on 127\.0\.0\.1:[1-9]\d*", r.stdout)
    recording = next((copy / "demo-recordings").glob("*.pcapng"))
    # Wireshark's own reader agrees it is a capture with 2 interfaces.
    info = subprocess.run(["capinfos", "-I", str(recording)], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "lightning" in info.stdout, info.stdout + info.stderr

    # The interop test that loads the BOLT CSVs into pyln-proto reads them from the copy.
    bin_path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=copy, capture_output=True, text=True,
                              check=True).stdout.strip()
    r = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        "Tests/interop/test_wire_pyln.py"], cwd=copy, env=dict(env, LNRR_BIN=f"{bin_path}/lnrr"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]


def test_nothing_reads_outside_the_repository():
    """No build file, test, tool or CI script names the old sibling folder."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        if not (name.startswith(("Sources/", "Tests/", "tools/", ".ci/")) or name == "Package.swift"):
            continue
        path = REPO / name
        if not path.is_file() or path.suffix in (".pcapng", ".csv"):
            continue
        text = path.read_text(errors="replace")
        # Any path that climbs out of the repository (`../x/`) or names its parent folder reaches
        # outside the clone; a user's clone has nothing there.
        if re.search(r"(^|[\"'\s(=])\.\./[A-Za-z_]+/|REPO\.parent|/work/", text, re.M) and name != "Tests/interop/test_newcomer.py":
            offenders.append(name)
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# Item 2: keys new makes its folder.


def test_keys_new_creates_missing_folders_owner_only(lnrr, tmp_path):
    out = tmp_path / "keys" / "deeper" / "alice.key"
    r = run(lnrr, "keys", "new", "--out", out)
    for folder in (tmp_path / "keys", tmp_path / "keys" / "deeper"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, oct(folder.stat().st_mode)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secret = bytes.fromhex(out.read_text().strip())
    assert r.stdout.strip() == PrivateKey(secret).public_key().serializeCompressed().hex()
    # A file where the folder should be is a clear error, exit 2.
    (tmp_path / "plain").write_text("x")
    r = run(lnrr, "keys", "new", "--out", tmp_path / "plain" / "a.key", check=False)
    assert r.returncode == 2 and "plain" in r.stderr


# ---------------------------------------------------------------------------------------------
# Item 7: durations with units.


def test_idle_timeout_takes_units_and_bare_seconds(lnrr, keys, procs):
    for value, low, high in (("700ms", 0.5, 4.0), ("1", 0.9, 6.0), ("1.5s", 1.3, 7.0)):
        port = free_port()
        peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--listen", f"127.0.0.1:{port}", "--idle-timeout", value)
        listening(peer)
        conn = pyln_session(keys("pyln"), keys("lnrr").node_id, port)
        started = time.monotonic()
        assert peer.wait(timeout=30) == 0, peer.stderr_text()
        took = time.monotonic() - started
        assert low <= took <= high, (value, took)
        conn.connection.close()


def test_replay_timeouts_take_units(lnrr, keys, procs, tmp_path):
    recording = REPO / "recordings/examples/custommsg-during-closing.pcapng"
    # Nobody dials: --connect-timeout 1500ms ends the wait after 1.5 s, with a connection error (2).
    started = time.monotonic()
    r = run(lnrr, "replay", recording, "--as", "b", "--listen", "127.0.0.1:0", "--key", keys("b").path,
            "--connect-timeout", "1500ms", "--timeout", "2s", check=False, timeout=60)
    took = time.monotonic() - started
    assert r.returncode == 2, r.stdout + r.stderr
    assert 1.3 <= took <= 15, took
    # The listening line is on stdout, JSON, with the real port, also without --json.
    line = json.loads(next(l for l in r.stdout.splitlines() if '"listening"' in l))
    assert line["event"] == "listening" and re.fullmatch(r"127\.0\.0\.1:[1-9]\d*", line["address"])
    assert line["node_id"] == keys("b").node_id


@pytest.mark.parametrize("flag,bad", [("--timeout", "5x"), ("--timeout", "-1s"), ("--timeout", "inf"),
                                      ("--connect-timeout", "10 parsecs"), ("--timeout", "0")])
def test_bad_durations_are_usage_errors(lnrr, keys, flag, bad):
    r = run(lnrr, "replay", REPO / "recordings/examples/custommsg-during-closing.pcapng", "--as", "a",
            "--connect", f"{keys('b').node_id}@127.0.0.1:1", "--key", keys("a").path, flag, bad, check=False)
    assert r.returncode == 2, r.stderr
    assert flag in r.stderr, r.stderr


def test_every_time_flag_says_its_bare_unit(lnrr):
    flags = {("record",): {"--hook-timeout": "milliseconds"},
             ("replay",): {"--timeout": "milliseconds", "--connect-timeout": "seconds"},
             ("peer",): {"--idle-timeout": "seconds", "--connect-timeout": "seconds"}}
    for words, wanted in flags.items():
        # Wide enough that each option's help is one line.
        text = run(lnrr, "help", *words, env=dict(os.environ, COLUMNS="400")).stdout
        for flag, unit in wanted.items():
            m = re.search(r"^\s+" + re.escape(flag) + r" <DURATION>\s+(.*)$", text, re.M)
            assert m, (words, flag)
            assert f"a bare number is {unit}" in m.group(1) and "500ms" in m.group(1), m.group(1)


# ---------------------------------------------------------------------------------------------
# Item 8: one listening line, with the bound port, everywhere.


def test_record_prints_the_bound_port_and_records_it(lnrr, keys, procs, tmp_path):
    bob = procs(lnrr, "peer", "--key", keys("b").path, "--listen", "127.0.0.1:0", "--echo")
    bob_port = int(listening(bob)["address"].rsplit(":", 1)[1])
    assert bob_port > 0
    keyring = keys.dir
    keys("a")
    out = tmp_path / "recs"
    proxy = procs(lnrr, "record", "--listen", "127.0.0.1:0", "--upstream", f"{keys('b').node_id}@127.0.0.1:{bob_port}",
                  "--keys", keyring, "--out", out)
    line = listening(proxy)
    host, port = line["address"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    # The address works: pyln-proto, as a, reaches bob through it.
    conn = pyln_session(keys("a"), keys("b").node_id, int(port))
    conn.send_message(struct.pack(">H", 32769) + b"hi")
    assert conn.read_message() == struct.pack(">H", 32769) + b"hi"
    conn.connection.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(out.glob("*.pcapng")):
        time.sleep(0.1)
    bob.wait(timeout=30)
    proxy.stop()
    recording = next(out.glob("*.pcapng"))
    info = subprocess.run(["capinfos", "-k", str(recording)], capture_output=True, text=True, check=True).stdout
    metadata = json.loads(info.split("lnrr: ", 1)[1].strip().split("\n")[0])
    assert metadata["listen"] == f"127.0.0.1:{port}"


def test_peer_listening_line_has_the_bound_port(lnrr, keys, procs):
    peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--listen", "127.0.0.1:0", "--exit-after", "1")
    line = listening(peer)
    assert line["node_id"] == keys("lnrr").node_id
    pyln_session(keys("pyln"), keys("lnrr").node_id, int(line["address"].rsplit(":", 1)[1]))
    assert peer.wait(timeout=30) == 0


def test_listening_line_brackets_ipv6(lnrr, keys, procs):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        pytest.fail(f"this machine has no IPv6 loopback ({e}); the test needs ::1")
    peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--listen", "[::1]:0")
    assert re.fullmatch(r"\[::1\]:[1-9]\d*", listening(peer)["address"])


# ---------------------------------------------------------------------------------------------
# Item 9: peer --keep-listening.


def test_peer_keep_listening_survives_probes_and_serves_every_connection(lnrr, keys, procs):
    peer = procs(lnrr, "peer", "--key", keys("lnrr").path, "--listen", "127.0.0.1:0", "--keep-listening", "--echo")
    port = int(listening(peer)["address"].rsplit(":", 1)[1])
    # A port probe: connect and close at once. The peer must not exit.
    for _ in range(2):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # Two sessions one after another, then two at once: each completes the handshake and is echoed.
    for i in range(2):
        conn = pyln_session(keys("pyln"), keys("lnrr").node_id, port)
        conn.send_message(struct.pack(">H", 32771) + bytes([i]))
        assert conn.read_message() == struct.pack(">H", 32771) + bytes([i])
        conn.connection.close()
    together = [pyln_session(keys(f"p{i}"), keys("lnrr").node_id, port) for i in range(2)]
    for i, conn in enumerate(together):
        conn.send_message(struct.pack(">H", 32773) + bytes([i]))
    for i, conn in enumerate(together):
        assert conn.read_message() == struct.pack(">H", 32773) + bytes([i])
        conn.connection.close()
    assert peer.popen.poll() is None, peer.stderr_text()
    peer.popen.send_signal(signal.SIGTERM)
    assert peer.wait(timeout=20) == 0, peer.stderr_text()
    connected = [l for l in peer.json_lines() if l.get("event") == "connected"]
    assert {l["node_id"] for l in connected} == {keys("pyln").node_id, keys("p0").node_id, keys("p1").node_id}
    assert all("conn" in l for l in peer.json_lines() if l.get("event") != "listening")


def test_keep_listening_needs_listen(lnrr, keys):
    r = run(lnrr, "peer", "--key", keys("a").path, "--connect", f"{keys('b').node_id}@127.0.0.1:1",
            "--keep-listening", check=False)
    assert r.returncode == 2 and "--keep-listening needs --listen" in r.stderr


# ---------------------------------------------------------------------------------------------
# Item 14: command words, list's header, one wording for missing files.


def test_unknown_command_words(lnrr):
    r = run(lnrr, "help", "nosuch", check=False)
    assert r.returncode == 2 and "unknown command 'nosuch'" in r.stderr and "replay" in r.stderr
    assert r.stdout == ""
    r = run(lnrr, "lst", check=False)
    assert r.returncode == 2 and "did you mean 'list'?" in r.stderr
    r = run(lnrr, "keys", "nwe", check=False)
    assert r.returncode == 2 and "did you mean 'new'?" in r.stderr
    r = run(lnrr, "help", "keys", "nwe", check=False)
    assert r.returncode == 2 and "did you mean 'new'?" in r.stderr
    # Known words still work, through help and directly.
    assert "lnrr keys new" in run(lnrr, "help", "keys", "new").stdout
    assert run(lnrr, "keys", "--help").returncode == 0


def test_list_has_a_header_row(lnrr, tmp_path):
    folder = tmp_path / "recs"
    folder.mkdir()
    shutil.copy(REPO / "recordings/examples/custommsg-during-closing.pcapng", folder)
    lines = run(lnrr, "list", folder).stdout.splitlines()
    assert len(lines) == 2
    header = lines[0].split()
    assert header[:2] == ["started", "(UTC)"] and "a->b" in header and "b->a" in header and header[-1] == "file"
    row = lines[1]
    # Columns line up: each header word starts where its value does.
    assert row.index("custommsg-during-closing.pcapng") == lines[0].index("file")
    assert row.index("03656836") == lines[0].index(" a ") + 1


def test_missing_files_have_one_wording(lnrr, keys, tmp_path):
    missing = tmp_path / "nosuch"
    rec = REPO / "recordings/examples/custommsg-during-closing.pcapng"
    cases = [
        ("show", missing), ("list", missing), ("keys", "id", missing), ("rules", "check", missing),
        ("rules", "import-dev-disconnect", missing), ("replay", "--offline", missing),
        ("replay", "--offline", rec, "--rules", missing),
        ("peer", "--key", missing, "--listen", "127.0.0.1:0"),
        ("peer", "--key", keys("a").path, "--listen", "127.0.0.1:0", "--send-file", missing),
        ("replay", missing, "--as", "a", "--connect", f"{keys('b').node_id}@127.0.0.1:1", "--key", keys("a").path),
        ("view", missing),
    ]
    for args in cases:
        r = run(lnrr, *args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert f"{missing}: No such file or directory" in r.stderr, (args, r.stderr)
        assert "couldn" not in r.stderr and "doesn’t exist" not in r.stderr, (args, r.stderr)


# ---------------------------------------------------------------------------------------------
# Item 16 and 17: decode's example; the man page.


def test_decode_help_example_decodes_an_init(lnrr):
    examples = [l.strip() for l in run(lnrr, "help", "decode").stdout.splitlines() if l.strip().startswith("lnrr decode --json")]
    assert examples
    for example in examples:
        r = run(lnrr, *example.split()[1:])
        decoded = json.loads(r.stdout)
        assert decoded["name"] == "init" and decoded["fields"]["features"]["hex"] == ""


def test_man_page_is_fresh_and_renders():
    r = subprocess.run(["tools/gen-manual", "--check"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    page = (REPO / "docs/man/lnrr.1").read_text()
    for command in ("demo", "record", "replay", "peer", "keys"):
        assert f".It Em {command}" in page or f"Em {command}" in page
    if shutil.which("mandoc"):
        assert subprocess.run(["mandoc", "-T", "lint", "-W", "error", str(REPO / "docs/man/lnrr.1")]).returncode == 0


def test_completion_script_is_generated(lnrr, tmp_path):
    script = run(lnrr, "--generate-completion-script", "bash").stdout
    assert "complete" in script and "replay" in script
    path = tmp_path / "lnrr.bash"
    path.write_text(script)
    # bash accepts it, and it completes a subcommand name.
    r = subprocess.run(["bash", "-c", f"source {path}; COMP_WORDS=(lnrr rep); COMP_CWORD=1; "
                                      "_lnrr 2>/dev/null; echo \"${COMPREPLY[@]}\""], capture_output=True, text=True)
    assert r.returncode == 0 and "replay" in r.stdout, r.stdout + r.stderr
