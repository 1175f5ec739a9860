"""Replay against nodes that randomise and reorder (issue #17 part 2), with tools/handover-node.

The model node runs a BOLT 2 flow over pyln-proto's BOLT 8 and answers an unknown channel id with
`error` as a real node does. `--fresh-ids` makes it pick a fresh temporary_channel_id, funding txid
and revocation basepoint every run; `--open v2` derives the channel id from both revocation
basepoints; `--peer-storage` sends a peer_storage at a random point.
"""
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import handover_scenario as scenario  # noqa: E402

FAST = ["--counter-delay", "0.05"]


@pytest.fixture(autouse=True)
def lnrr_env(lnrr, monkeypatch):
    monkeypatch.setenv("LNRR_BIN", lnrr)


def record(tmp_path, *node_args):
    result = scenario.record(tmp_path / "rec", tmp_path / "keys", rules_text=None, node_args=[*node_args, *FAST])
    assert result["funder"]["end"]["result"] == "closed" and result["fundee"]["end"]["result"] == "closed", result
    return result["recording"]


def results(report):
    return [l for l in report if "result" in l]


def first_id_bearing_send(report, bindings):
    """The first message lnrr sent with a live id in place of the recorded one."""
    live = {b["live"] for b in bindings}
    for line in results(report):
        if line["result"] == "sent" and any(i in line["hex"] for i in live):
            return line
    raise AssertionError("no message sent with a live id")


@pytest.mark.parametrize("version, side", [("v1", "b"), ("v2", "a"), ("v2", "b")])
def test_fresh_ids_match_with_binding_and_diverge_without(tmp_path, version, side):
    path = record(tmp_path, "--fresh-ids", "--open", version)
    play = scenario.replay if side == "a" else scenario.replay_as_b
    node_args = ["--fresh-ids", "--open", version]

    code, report, live = play(path, tmp_path / "keys", ["--timing", "fast", "--timeout", "3000"], node_args)
    verdict = report[-1]
    assert code == 0 and verdict["verdict"] == "matched", (report[-4:], live)
    assert live["end"]["result"] == "closed", live            # the live node closed its channel normally
    kinds = [b["kind"] for b in verdict["bindings"]]
    # v1: the live funder chose both; v2: the channel id hashes the live node's revocation basepoint.
    assert "channel_id" in kinds and (side == "a" or "temporary_channel_id" in kinds), verdict["bindings"]
    for b in verdict["bindings"]:
        assert b["recorded"] != b["live"] and len(b["live"]) == 64
    assert [l["binding"] for l in results(report) if l["result"] == "bound"] == verdict["bindings"]
    sent_with_live_id = first_id_bearing_send(report, verdict["bindings"])
    assert "with the live node's channel id" in sent_with_live_id["detail"]

    off_option = ["--bind", "off"] if side == "a" else ["--no-bind"]   # the two spellings
    code, off, live_off = play(path, tmp_path / "keys", ["--timing", "fast", "--timeout", "3000", *off_option], node_args)
    verdict_off = off[-1]
    assert code == 1 and verdict_off["verdict"] == "diverged", off[-3:]
    assert verdict_off["bindings"] == []
    # The live node refused the first message that named the recorded channel, and the replay
    # diverged at the step right after it.
    assert live_off["end"]["result"].startswith("unknown channel"), live_off
    refused = live_off["end"]["result"].rsplit(" in ", 1)[1]
    sent = [l for l in results(off) if l["result"] == "sent"]
    assert sent[-1]["name"] == refused == sent_with_live_id["name"], (sent[-1], live_off)
    assert verdict_off["first_divergence_step"] == sent[-1]["step"] + 1, verdict_off


def test_peer_storage_at_a_random_point_matches_20_of_20(tmp_path):
    path = record(tmp_path, "--peer-storage")
    reordered = 0
    for n in range(20):
        code, report, fundee = scenario.replay(path, tmp_path / "keys", ["--timing", "fast", "--timeout", "3000"],
                                               ["--peer-storage"])
        verdict = report[-1]
        assert code == 0 and verdict["verdict"] == "matched", (n, [l for l in report if l.get("result") != "sent"][-6:])
        [storage] = [l for l in results(report) if l.get("name") == "peer_storage" and l["dir"] == "b->a"]
        assert storage["result"] in ("matched", "reordered"), storage
        reordered += storage["result"] == "reordered"
        assert fundee["end"]["result"] == "closed", fundee
    # The node picks one of nine points; about 73 % of runs put it where strict order diverges
    # (29 of 40 measured), so 20 runs reorder about 14 times: at least 6 fails by chance about once
    # in 70,000 runs, while a replay that ignored the point would reorder none.
    assert reordered >= 6, reordered

    # Today's behaviour, on request: the same traffic diverges in strict order.
    # Ten runs, at least two diverging: with ~73 % diverging per run this fails by chance about
    # once in 15,000 (five runs needing three failed about one time in eight).
    diverged = 0
    for n in range(10):
        code, report, _ = scenario.replay(path, tmp_path / "keys", ["--timing", "fast", "--timeout", "1500", "--order", "strict"],
                                          ["--peer-storage"])
        if code == 1:
            diverged += 1
            # Either peer_storage came while another message was awaited, or the reverse.
            assert "peer_storage" in report[-1]["first_divergence"], report[-1]
    assert diverged >= 2, diverged
