"""`lnrr export --format pytest`: a recording becomes a standalone pytest on pyln-proto.

The generated file is run by pytest in a subprocess against tools/handover-node, the node the
recording came from: it must pass against the same node and fail at the right step against a
variation (the hand-over bug fixed, so the recorded `error` never comes).
"""
import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO, free_port, run

sys.path.insert(0, str(REPO / "tools"))
import handover_scenario as scenario  # noqa: E402


@pytest.fixture(autouse=True)
def lnrr_env(lnrr, monkeypatch):
    monkeypatch.setenv("LNRR_BIN", lnrr)


@pytest.fixture(scope="module")
def recording(tmp_path_factory, lnrr):
    os.environ["LNRR_BIN"] = lnrr
    tmp = tmp_path_factory.mktemp("export")
    result = scenario.record(tmp / "rec", tmp / "keys", node_args=["--counter-delay", "0.05"])
    assert result["fundee"]["bug"], result
    return result["recording"], tmp / "keys", result["keys"]


def wait_until_bound(port, timeout=30.0):
    """Until something listens on `port`, without connecting (the test accepts one connection only)."""
    import socket
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing bound 127.0.0.1:{port} within {timeout} s")


def run_generated(test_file, env, *args):
    return subprocess.run([sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env}, cwd=test_file.parent)


def against_fundee(test_file, keydir, ids, *node_args, via_options=False, env=()):
    fundee = scenario.start_node("fundee", keydir / "b.key", "--listen", "127.0.0.1:0", *node_args)
    port = scenario.first_line(fundee)["port"]
    target, key = f"{ids['b']}@127.0.0.1:{port}", str(keydir / "a.key")
    if via_options:
        r = run_generated(test_file, {"PYTHONPATH": str(test_file.parent)}, "-p", test_file.stem,
                          "--lnrr-connect", target, "--lnrr-key", key, "--lnrr-timeout", "2")
    else:
        r = run_generated(test_file, {"LNRR_CONNECT": target, "LNRR_KEY": key, "LNRR_TIMEOUT": "2", **dict(env)})
    if fundee.poll() is None:
        fundee.terminate()
    return r, scenario.finish(fundee)


@pytest.mark.parametrize("mode", ["type", "fields", "exact"])
def test_exported_test_passes_against_the_node_it_was_recorded_from(lnrr, recording, tmp_path, mode):
    path, keydir, ids = recording
    out = tmp_path / f"test_handover_{mode}.py"
    r = run(lnrr, "export", path, "--as", "a", "--format", "pytest", "--match", mode, "-o", out)
    assert "23 steps" in r.stderr
    text = out.read_text()
    ast.parse(text)                                   # valid Python
    doc = ast.get_docstring(ast.parse(text))
    assert ids["a"] in doc and ids["b"] in doc and f"matched by {mode}" in doc
    assert "# phase" in text and "closing -> closed" in text   # phase comments
    r, fundee = against_fundee(out, keydir, ids)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout
    assert fundee["bug"]                              # it really drove the node into its bug


def test_exported_test_fails_at_the_step_that_changed(lnrr, recording, tmp_path):
    path, keydir, ids = recording
    out = tmp_path / "test_handover.py"
    run(lnrr, "export", path, "--as", "a", "--format", "pytest", "--match", "fields", "-o", out)
    r, fundee = against_fundee(out, keydir, ids, "--fixed")
    assert r.returncode == 1, r.stdout[-3000:]
    # `lnrr replay` puts the recorded error at step 22 (test_replay_handover); so must the export.
    assert "step 22: no error within 2.0 s" in r.stdout, r.stdout[-3000:]
    assert not fundee["bug"]


def test_options_instead_of_environment_and_a_clear_error_without_either(lnrr, recording, tmp_path):
    path, keydir, ids = recording
    out = tmp_path / "test_handover_opts.py"
    run(lnrr, "export", path, "--as", "a", "-o", out)
    r, _ = against_fundee(out, keydir, ids, via_options=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    r = run_generated(out, {"LNRR_KEY": str(keydir / "a.key")})
    assert r.returncode == 1 and "set one of LNRR_CONNECT" in r.stdout


def as_b_against_funder(test_file, keydir, ids, *node_args, env=()):
    port = free_port()
    test = subprocess.Popen([sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=test_file.parent,
                            env={**os.environ, "LNRR_LISTEN": f"127.0.0.1:{port}", "LNRR_KEY": str(keydir / "b.key"),
                                 "LNRR_TIMEOUT": "3", **dict(env)})
    wait_until_bound(port)
    funder = scenario.start_node("funder", keydir / "a.key", "--connect", f"{ids['b']}@127.0.0.1:{port}",
                                 "--counter-delay", "0.05", *node_args)
    a = scenario.finish(funder)
    stdout, stderr = test.communicate(timeout=120)
    return test.returncode, stdout + stderr, a


def test_playing_b_listens_for_the_live_funder(lnrr, recording, tmp_path):
    path, keydir, ids = recording
    out = tmp_path / "test_fundee.py"
    run(lnrr, "export", path, "--as", "b", "--match", "fields", "-o", out)
    code, output, a = as_b_against_funder(out, keydir, ids)
    assert code == 0, output[-3000:]
    assert a["end"]["result"] == "error received: closingd: unexpected message 32769", a


@pytest.mark.parametrize("version, side", [("v1", "b"), ("v2", "a")])
def test_exported_test_binds_the_live_nodes_channel_ids(lnrr, tmp_path, version, side):
    node_args = ["--fresh-ids", "--open", version]
    result = scenario.record(tmp_path / "rec", tmp_path / "keys", rules_text=None, node_args=[*node_args, "--counter-delay", "0.05"])
    keydir, ids = tmp_path / "keys", result["keys"]
    out = tmp_path / f"test_fresh_{version}_{side}.py"
    run(lnrr, "export", result["recording"], "--as", side, "-o", out)
    for bind in ["on", "off"]:
        if side == "b":
            code, output, live = as_b_against_funder(out, keydir, ids, *node_args, env={"LNRR_BIND": bind})
        else:
            r, live = against_fundee(out, keydir, ids, *node_args, env={"LNRR_BIND": bind})
            code, output = r.returncode, r.stdout + r.stderr
        if bind == "on":
            assert code == 0, output[-3000:]
            assert live["end"]["result"] == "closed", live
        else:
            # The live node refuses the first message naming the recorded channel; the test fails
            # at the step after it (accept_channel is step 4 playing b; tx_complete step 5 playing a).
            assert code == 1 and live["end"]["result"].startswith("unknown channel"), (output[-2000:], live)
            assert f"step {5 if side == 'b' else 6}: " in output, output[-3000:]


def test_usage_errors(lnrr, recording, tmp_path):
    path, _, _ = recording
    r = run(lnrr, "export", path, "--as", "a", "--format", "lnprototest", check=False)
    assert r.returncode == 2 and "--format must be one of: pytest" in r.stderr
    r = run(lnrr, "export", str(tmp_path / "nope.pcapng"), "--as", "a", check=False)
    assert r.returncode == 2
