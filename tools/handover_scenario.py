#!/usr/bin/env python3
"""Records and replays the hand-over bug of tools/handover-node through lnrr.

    handover_scenario.py record --out DIR            record a session with the injection rule
    handover_scenario.py replay FILE [ARGS...]       replay FILE as a against a fresh fundee
    handover_scenario.py replay-b FILE [ARGS...]     replay FILE as b against a fresh funder

`--node-args "--fresh-ids --open v2 --peer-storage"` passes options to both nodes (see
tools/handover-node); `record --no-rules` records without the injection rule.

`record` starts a fundee (node b) and `lnrr record` in front of it with a rule that injects a custom
message at the `channel -> closing` hand-over, then a funder (node a) that dials the proxy. It
prints one JSON object: the recording's path and how each node ended. `replay` starts a fresh
fundee and runs `lnrr replay FILE --as a --connect ... ARGS`, printing lnrr's JSON report lines and
then {"fundee": ...}. Keys are made fresh in a temporary folder unless --keys names one.

LNRR_BIN names the lnrr binary (default: .build/debug/lnrr). Run with the Python of .venv.
"""
import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NODE = REPO / "tools" / "handover-node"
INJECTION_RULES = """\
# Inject a custom message towards b at the moment b's channel passes from channeld to closingd.
rules:
  - name: custommsg-at-handover
    match: {on: channel -> closing}
    action: {inject: {hex: "8001c0ffee", dir: a->b}}
"""


def lnrr() -> str:
    return os.environ.get("LNRR_BIN", str(REPO / ".build" / "debug" / "lnrr"))


def make_keys(directory: Path) -> dict:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ids = {}
    for name in ["a", "b"]:
        path = directory / f"{name}.key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        ids[name] = subprocess.run([lnrr(), "keys", "id", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(role: str, key: Path, *where: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(NODE), "--role", role, "--key", str(key), *where],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"node exited early: {proc.stderr.read()}")
    return json.loads(line)


def finish(proc: subprocess.Popen, timeout: float = 30) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return {"exit": proc.returncode, "bug": any(l.get("event") == "bug" for l in lines),
            "end": next((l for l in reversed(lines) if l.get("event") == "end"), None), "stderr": err[-500:]}


def record(out: Path, keydir: Path, rules_text: str | None = INJECTION_RULES, node_args: list[str] = ()) -> dict:
    """Records one session between a funder and a fundee through `lnrr record` (with `rules_text`
    as its rules unless None); `node_args` go to both nodes."""
    ids = make_keys(keydir)
    rules_args = []
    if rules_text is not None:
        rules = keydir / "rules.yaml"
        rules.write_text(rules_text)
        rules_args = ["--rules", str(rules)]
    fundee = start_node("fundee", keydir / "b.key", "--listen", "127.0.0.1:0", *node_args)
    port_b = first_line(fundee)["port"]
    port_p = free_port()
    proxy = subprocess.Popen([lnrr(), "record", "--listen", f"127.0.0.1:{port_p}", "--upstream", f"{ids['b']}@127.0.0.1:{port_b}",
                              "--keys", str(keydir), "--out", str(out), *rules_args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while '"listening"' not in (proxy.stdout.readline() or '"listening"'):
            pass
        funder = start_node("funder", keydir / "a.key", "--connect", f"{ids['b']}@127.0.0.1:{port_p}", *node_args)
        a = finish(funder)
        b = finish(fundee)
        time.sleep(0.3)  # the proxy closes the recording once both sides are gone
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    files = sorted(Path(out).glob("*.pcapng"))
    return {"recording": str(files[-1]) if files else None, "funder": a, "fundee": b, "keys": ids}


def replay(path: str, keydir: Path, extra: list[str], node_args: list[str] = ()) -> tuple[int, list[dict], dict]:
    """Replays `path` as a (lnrr dials) against a fresh fundee started with `node_args`."""
    ids = make_keys(keydir)
    fundee = start_node("fundee", keydir / "b.key", "--listen", "127.0.0.1:0", *node_args)
    port_b = first_line(fundee)["port"]
    run = subprocess.run([lnrr(), "replay", path, "--as", "a", "--connect", f"{ids['b']}@127.0.0.1:{port_b}",
                          "--key", str(keydir / "a.key"), "--json", *extra], capture_output=True, text=True, timeout=120)
    if fundee.poll() is None:
        time.sleep(0.2)
        fundee.terminate()
    report = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    return run.returncode, report, finish(fundee)


def replay_as_b(path: str, keydir: Path, extra: list[str], node_args: list[str] = ()) -> tuple[int, list[dict], dict]:
    """Replays `path` as b (lnrr listens) against a fresh funder started with `node_args`."""
    ids = make_keys(keydir)
    proc = subprocess.Popen([lnrr(), "replay", path, "--as", "b", "--listen", "127.0.0.1:0", "--key", str(keydir / "b.key"),
                             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    funder = None
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            lines.append(json.loads(line))
            if lines[-1].get("event") == "listening":
                port = int(lines[-1]["address"].rsplit(":", 1)[1])
                funder = start_node("funder", keydir / "a.key", "--connect", f"{ids['b']}@127.0.0.1:{port}", *node_args)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if funder is not None and funder.poll() is None:
        time.sleep(0.2)
        funder.terminate()
    return proc.returncode, lines, finish(funder) if funder is not None else {"exit": None, "stderr": proc.stderr.read()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("--out", required=True)
    r.add_argument("--keys", help="key folder (default: a fresh temporary one)")
    r.add_argument("--no-rules", action="store_true", help="record without the injection rule")
    r.add_argument("--node-args", default="", help="options for both nodes, e.g. \"--fresh-ids --open v2\"")
    for name in ["replay", "replay-b"]:
        p = sub.add_parser(name)
        p.add_argument("file")
        p.add_argument("--keys")
        p.add_argument("--node-args", default="")
        p.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    keydir = Path(args.keys) if args.keys else Path(tempfile.mkdtemp()) / "keys"
    node_args = args.node_args.split()
    if args.command == "record":
        print(json.dumps(record(Path(args.out), keydir, None if args.no_rules else INJECTION_RULES, node_args)))
        return 0
    play = replay if args.command == "replay" else replay_as_b
    code, report, node = play(args.file, keydir, args.args, node_args)
    for line in report:
        print(json.dumps(line))
    print(json.dumps({"fundee" if args.command == "replay" else "funder": node}))
    return code


if __name__ == "__main__":
    sys.exit(main())
