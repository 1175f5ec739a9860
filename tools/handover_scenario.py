#!/usr/bin/env python3
"""Records and replays the hand-over bug of tools/handover-node through lnrr.

    handover_scenario.py record --out DIR            record a session with the injection rule
    handover_scenario.py replay FILE [ARGS...]       replay FILE as a against a fresh fundee

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


def record(out: Path, keydir: Path, rules_text: str = INJECTION_RULES) -> dict:
    ids = make_keys(keydir)
    rules = keydir / "rules.yaml"
    rules.write_text(rules_text)
    fundee = start_node("fundee", keydir / "b.key", "--listen", "127.0.0.1:0")
    port_b = first_line(fundee)["port"]
    port_p = free_port()
    proxy = subprocess.Popen([lnrr(), "record", "--listen", f"127.0.0.1:{port_p}", "--upstream", f"{ids['b']}@127.0.0.1:{port_b}",
                              "--keys", str(keydir), "--out", str(out), "--rules", str(rules)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while '"listening"' not in (proxy.stdout.readline() or '"listening"'):
            pass
        funder = start_node("funder", keydir / "a.key", "--connect", f"{ids['b']}@127.0.0.1:{port_p}")
        a = finish(funder)
        b = finish(fundee)
        time.sleep(0.3)  # the proxy closes the recording once both sides are gone
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
    files = sorted(Path(out).glob("*.pcapng"))
    return {"recording": str(files[-1]) if files else None, "funder": a, "fundee": b, "keys": ids}


def replay(path: str, keydir: Path, extra: list[str]) -> tuple[int, list[dict], dict]:
    ids = make_keys(keydir)
    fundee = start_node("fundee", keydir / "b.key", "--listen", "127.0.0.1:0")
    port_b = first_line(fundee)["port"]
    run = subprocess.run([lnrr(), "replay", path, "--as", "a", "--connect", f"{ids['b']}@127.0.0.1:{port_b}",
                          "--key", str(keydir / "a.key"), "--json", *extra], capture_output=True, text=True, timeout=120)
    if fundee.poll() is None:
        time.sleep(0.2)
        fundee.terminate()
    report = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    return run.returncode, report, finish(fundee)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("--out", required=True)
    r.add_argument("--keys", help="key folder (default: a fresh temporary one)")
    p = sub.add_parser("replay")
    p.add_argument("file")
    p.add_argument("--keys")
    p.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    keydir = Path(args.keys) if args.keys else Path(tempfile.mkdtemp()) / "keys"
    if args.command == "record":
        print(json.dumps(record(Path(args.out), keydir)))
        return 0
    code, report, fundee = replay(args.file, keydir, args.args)
    for line in report:
        print(json.dumps(line))
    print(json.dumps({"fundee": fundee}))
    return code


if __name__ == "__main__":
    sys.exit(main())
