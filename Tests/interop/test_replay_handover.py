"""The reproduction scenario end to end: a hand-over bug recorded through lnrr, then replayed.

Both nodes are tools/handover-node (pyln-proto BOLT 8, Core Lightning's owner model with a
deliberate closingd bug); lnrr records between them and later plays node a against a fresh node b.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run

sys.path.insert(0, str(REPO / "tools"))
import handover_scenario as scenario  # noqa: E402

EXAMPLE = REPO / "recordings" / "examples" / "custommsg-during-closing.pcapng"
EARLIER = """\
rules:
  - name: not-at-handover          # the recorded injection no longer goes out...
    match: {custom: true, dir: a->b}
    action: drop
  - name: before-first-shutdown    # ...one goes out before a's first shutdown instead
    match: {type: shutdown, dir: a->b, nth: 1}
    action: {inject: {hex: "8001c0ffee", when: before}}
"""


@pytest.fixture(autouse=True)
def lnrr_env(lnrr, monkeypatch):
    monkeypatch.setenv("LNRR_BIN", lnrr)


def show(lnrr, path):
    out = run(lnrr, "show", "--json", path).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def error_step(report):
    [line] = [l for l in report if l.get("name") == "error" and l.get("step")]
    return line


def test_recording_through_lnrr_shows_the_bug(lnrr, tmp_path):
    result = scenario.record(tmp_path / "rec", tmp_path / "keys")
    assert result["fundee"]["bug"], result
    assert result["funder"]["end"]["result"].startswith("error received"), result
    lines = show(lnrr, result["recording"])
    messages = [l for l in lines if "type" in l]
    names = [(l["dir"], l["name"]) for l in messages]
    # The flow went through every owner before the injection.
    for name in ["open_channel", "accept_channel", "funding_created", "funding_signed", "channel_ready",
                 "update_add_htlc", "update_fulfill_htlc", "commitment_signed", "revoke_and_ack"]:
        assert ("a->b", name) in names or ("b->a", name) in names, name
    i = names.index(("b->a", "shutdown"))
    assert any("channel -> closing" in c for c in messages[i]["comments"])
    assert messages[i + 1]["type"] == 32769 and "injected by lnrr" in messages[i + 1]["comments"]
    assert names[i + 2] == ("b->a", "error")
    close = [l for l in lines if l.get("event") == "close"][-1]
    assert close["by"] == "b" and close["reason"] == "eof"

    # The fresh recording replays as a match too.
    code, report, fundee = scenario.replay(result["recording"], tmp_path / "keys2", ["--timing", "fast"])
    assert code == 0 and report[-1]["verdict"] == "matched", report[-3:]
    assert fundee["bug"]


def test_committed_example_reproduces_the_failure_20_of_20(tmp_path):
    assert EXAMPLE.is_file(), "recordings/examples/custommsg-during-closing.pcapng is missing"
    steps = set()
    for n in range(20):
        code, report, fundee = scenario.replay(str(EXAMPLE), tmp_path / f"keys{n}", [])
        assert code == 0, (n, report[-4:], fundee)
        verdict = report[-1]
        assert verdict["verdict"] == "matched" and verdict["missing"] == 0 and verdict["unexpected"] == 0, verdict
        assert fundee["bug"], (n, fundee)
        line = error_step(report)
        assert line["result"] == "matched"
        steps.add(line["step"])
    assert steps == {22}, steps   # the same step every time


def test_moving_the_injection_before_shutdown_diverges_where_the_error_was(tmp_path):
    rules = tmp_path / "earlier.yaml"
    rules.write_text(EARLIER)
    code, report, fundee = scenario.replay(str(EXAMPLE), tmp_path / "keys", ["--rules", str(rules), "--timeout", "1500"])
    assert code == 1, report[-3:]
    assert not fundee["bug"], fundee          # the custom message reached channeld, which copes
    verdict = report[-1]
    assert verdict["verdict"] == "diverged" and verdict["first_divergence_step"] == 22, verdict
    line = error_step(report)
    assert line["result"] == "missing" and "no error within 1500 ms" in line["detail"]
    injected = [l for l in report if l.get("result") == "injected"]
    shutdown = [l for l in report if l.get("name") == "shutdown" and l.get("dir") == "a->b"][0]
    assert injected and injected[0]["type"] == 32769 and report.index(injected[0]) < report.index(shutdown)


def test_replay_as_b_against_a_live_funder(lnrr, tmp_path):
    ids = scenario.make_keys(tmp_path / "keys")
    replay = subprocess.Popen([lnrr, "replay", str(EXAMPLE), "--as", "b", "--listen", "127.0.0.1:0",
                               "--key", str(tmp_path / "keys" / "b.key"), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listening = json.loads(replay.stdout.readline())
    while listening.get("event") != "listening":
        listening = json.loads(replay.stdout.readline())
    port = int(listening["address"].rsplit(":", 1)[1])
    funder = scenario.start_node("funder", tmp_path / "keys" / "a.key", "--connect", f"{ids['b']}@127.0.0.1:{port}")
    a = scenario.finish(funder)
    out, err = replay.communicate(timeout=60)
    report = [json.loads(l) for l in out.splitlines()]
    assert replay.returncode == 0, (report[-4:], err)
    assert report[-1]["verdict"] == "matched"
    # Playing b, lnrr sent the recorded error; the live funder got it as it did in the recording.
    assert error_step(report)["result"] == "sent"
    assert a["end"]["result"] == "error received: closingd: unexpected message 32769", a
    # The custom message was lnrr's own injection, not a's: it is not expected from the live funder.
    assert not any(l.get("type") == 32769 for l in report)


def test_progress_bar_and_colour_only_on_a_terminal(lnrr, tmp_path):
    import os
    import pty
    import select

    def replay_with(stdout_is_tty):
        ids = scenario.make_keys(tmp_path / f"keys{stdout_is_tty}")
        fundee = scenario.start_node("fundee", tmp_path / f"keys{stdout_is_tty}" / "b.key", "--listen", "127.0.0.1:0")
        port = scenario.first_line(fundee)["port"]
        args = [lnrr, "replay", str(EXAMPLE), "--as", "a", "--connect", f"{ids['b']}@127.0.0.1:{port}",
                "--key", str(tmp_path / f"keys{stdout_is_tty}" / "a.key"), "--timing", "fast"]
        if not stdout_is_tty:
            r = subprocess.run(args, capture_output=True, timeout=60)
            scenario.finish(fundee)
            return r.returncode, r.stdout + r.stderr
        master, slave = pty.openpty()
        p = subprocess.Popen(args, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm"})
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        code = p.wait(timeout=30)
        os.close(master)
        scenario.finish(fundee)
        return code, out

    code, out = replay_with(True)
    assert code == 0, out
    assert b"/23 steps" in out and b"[####" in out      # the bar, drawn on the terminal
    assert b"\x1b[32m" in out                            # matched lines in green
    code, out = replay_with(False)
    assert code == 0, out
    assert b"/23 steps" not in out
    assert b"\x1b[" not in out and b"\r" not in out


def test_offline_reports_the_same_rule_actions_as_the_live_replay(lnrr, tmp_path):
    rules = tmp_path / "earlier.yaml"
    rules.write_text(EARLIER)
    offline = run(lnrr, "replay", "--offline", str(EXAMPLE), "--as", "a", "--rules", str(rules), "--json").stdout
    offline = [json.loads(l) for l in offline.splitlines()]
    acted = [(l["name"], l["rules"]) for l in offline if l.get("rules")]
    # The recorded injection is part of what a replay sends, so the rule that drops it acts on it.
    assert acted == [("shutdown", ['rule "before-first-shutdown": injected custom a->b before this message']),
                     ("custom 32769", ['rule "not-at-handover": dropped'])], acted
    [injected] = [l for l in offline if l.get("note") == "injected by lnrr"]
    assert injected["type"] == 32769
    code, report, _ = scenario.replay(str(EXAMPLE), tmp_path / "keys", ["--rules", str(rules), "--timeout", "1000", "--timing", "fast"])
    live = [l for l in report if "rule \"" in (l.get("detail") or "")]
    assert [(l["name"], l["result"]) for l in live] == [("shutdown", "sent"), ("custom 32769", "dropped")], live
    assert len(live) == offline[-1]["acted_on"] == 2
