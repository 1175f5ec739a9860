"""One rule file, three ways: `lnrr record --rules`, `lnrr replay --offline --rules` and a live
`lnrr replay --rules` must agree on the phases, the rule actions and the bytes the receiving
pyln-proto node gets (issue 13: the proxy and replay used to apply rules with two copies of the
code, and only replay showed injected messages to the phase tracker).

The rules are chosen so that the answer depends on that: the `opening` phase is reached only
because an *injected* `init` counts, and a later rule acts only in `opening`.
"""
import json
import socket
import time

from conftest import run
from test_proxy_pyln import INIT, Proxy, UpstreamNode, msg, recordings, show_json
from test_replay_pyln import LiveB, replay, steps

P, X, Y, Z = (msg(32769, bytes([c])) for c in b"pxyz")
SWAPPED = bytes.fromhex("8003beef")

RULES = """
rules:
  # a never sends init itself: lnrr injects one for it after its first custom message.
  - name: give-init
    match: {type: 32769, dir: a->b, payload_prefix: "70"}
    action: {inject: {hex: "0010 0000 0000", dir: a->b, when: after}}
  # Acts only once both inits were seen, i.e. only if the injected one counts.
  - name: swap-in-opening
    match: {type: 32769, payload_prefix: "78", phase: opening}
    action: {replace: {hex: "8003beef"}}
  - name: twice
    match: {type: 32769, payload_prefix: "79"}
    action: duplicate
  - name: lose
    match: {type: 32769, payload_prefix: "7a"}
    action: drop
""".replace("0010 0000 0000", "001000000000")


def read_all(conn, quiet=1.0):
    """Every message `conn` receives until it has been quiet for `quiet` seconds or closes."""
    got = []
    conn.connection.settimeout(quiet)
    while True:
        try:
            got.append(conn.read_message())
        except (socket.timeout, ValueError, OSError):
            return got


def drive(proxy, upstream, keys, n):
    """a sends p; b answers init to a's first message; then a sends x, y, z and closes.
    Returns what b received."""
    a = proxy.dial(keys("a"), keys("b").node_id)
    b = upstream.wait_connection(n)
    b.connection.settimeout(10)
    a.connection.settimeout(10)
    a.send_message(P)
    received = [b.read_message()]
    b.send_message(INIT)
    assert a.read_message() == INIT
    for m in (X, Y, Z):
        a.send_message(m)
    time.sleep(0.3)
    received += read_all(b)
    a.connection.close()
    time.sleep(0.3)
    return received


def rule_notes(comments):
    return [c for c in comments if c.startswith("rule ")]


def phase_notes(comments):
    return [c[len("phase "):] for c in comments if c.startswith("phase ")]


def test_record_offline_and_live_replay_agree(lnrr, keys, procs, tmp_path):
    keys("a"), keys("b")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assert run(lnrr, "rules", "check", rules).returncode == 0

    # The same traffic, recorded plainly and recorded through the rules.
    upstream = UpstreamNode(keys("b"))
    plain_proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "plain")
    b_plain = drive(plain_proxy, upstream, keys, 1)
    plain_proxy.stop()
    ruled_proxy = Proxy(lnrr, procs, keys, upstream.address, tmp_path / "ruled", "--rules", rules)
    b_ruled = drive(ruled_proxy, upstream, keys, 2)
    ruled_proxy.stop()
    upstream.close()
    assert b_plain == [P, X, Y, Z]
    # What pyln-proto node b got through `lnrr record --rules`: the injected init counted, so x was swapped.
    assert b_ruled == [P, INIT, SWAPPED, Y, Y]
    [plain] = recordings(tmp_path / "plain")
    [ruled] = recordings(tmp_path / "ruled")

    # 1. record: the proxy's own notes on each message the nodes sent.
    lines, _ = show_json(lnrr, ruled)
    originals = [l for l in lines if "hex" in l and not any(
        c in ("delivery: injected", "delivery: replacement") or c.startswith("delivery: replacement") for c in l.get("comments", []))]
    recorded = [(l["dir"], l["hex"], rule_notes(l.get("comments", [])), phase_notes(l.get("comments", []))) for l in originals]
    assert [h for _, h, _, _ in recorded] == [m.hex() for m in (P, INIT, X, Y, Z)]

    # 2. replay --offline of the plain recording, with the rules: the same actions and phase changes.
    r = run(lnrr, "replay", "--offline", plain, "--rules", rules, "--json")
    offline = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")][:-1]
    assert [(l["dir"], bytes([l["type"] >> 8, l["type"] & 255]).hex(), l["rules"], l["phase_changes"]) for l in offline] \
        == [(d, h[:4], notes, phases) for d, h, notes, phases in recorded]
    assert any("swap-in-opening" in n for _, _, notes, _ in recorded for n in notes)
    assert ["connection: init -> opening"] in [phases for *_, phases in recorded]

    # 3. live replay of the plain recording as a, with the rules, against a fresh pyln-proto b:
    #    b gets the same bytes it got through the proxy, and the report names the same actions.
    def respond(m, conn):
        return [INIT] if m == P else []
    live = LiveB(keys("b"), respond)
    result, report = replay(lnrr, plain, "--as", "a", "--connect", live.address, "--key", keys("a").path,
                            "--timing", "fast", "--rules", rules, "--timeout", "3000")
    live.join()
    assert [m for _, _, m in live.received] == b_ruled, result.stdout + result.stderr
    details = " ".join(str(l.get("detail", "")) for l in steps(report))
    for _, _, notes, _ in recorded:
        for note in notes:
            if "give-init" in note:
                continue  # replay reports the injection as its own `injected` line
            assert note in details, (note, details)
    assert [l["result"] for l in steps(report) if l["result"] in ("injected", "dropped")] == ["injected", "dropped"]
    assert result.returncode == 0, result.stdout + result.stderr
