"""tools/python (the lnrr-testing pytest plugin): pip-installable, and its own tests pass.

The package is installed with pip into a scratch folder (not the shared venv), and pytest runs the
package's tests with only that folder added: the `lnrr_proxy` fixture must be found through the
installed `pytest11` entry point, as it is for a user after `pip install ./tools/python`.
"""
import os
import re
import subprocess
import sys

from conftest import REPO, run


def test_package_installs_and_its_fixture_tests_pass(lnrr, tmp_path):
    target = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, REPO / "tools" / "python", timeout=300)
    assert (target / "lnrr_testing" / "pytest_plugin.py").exists()
    env = dict(os.environ, PYTHONPATH=str(target), LNRR_BIN=lnrr)
    # Run from a folder without conftest.py so nothing but the installed plugin provides fixtures.
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", tmp_path,
                        str(REPO / "tools" / "python" / "tests")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "3 passed" in r.stdout


KEPT_OR_NOT = r'''
import secrets
from pyln.proto.wire import PrivateKey


def proxy(lnrr_proxy):
    secret = secrets.token_bytes(32)
    node_id = PrivateKey(secret).public_key().serializeCompressed().hex()
    p = lnrr_proxy(b_address=f"{node_id}@127.0.0.1:1", b_secret=secret)
    p.recordings_dir.mkdir(parents=True, exist_ok=True)
    (p.recordings_dir / "marker.pcapng").write_bytes(b"")
    print("RECORDINGS", p.recordings_dir)
    return p


def test_passes(lnrr_proxy):
    proxy(lnrr_proxy)


def test_fails(lnrr_proxy):
    proxy(lnrr_proxy)
    assert False, "on purpose"
'''


def test_recordings_are_kept_when_the_test_fails_and_removed_when_it_passes(lnrr, tmp_path):
    target = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, REPO / "tools" / "python", timeout=300)
    (tmp_path / "test_kept.py").write_text(KEPT_OR_NOT)
    env = dict(os.environ, PYTHONPATH=str(target), LNRR_BIN=lnrr)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--rootdir", tmp_path, "test_kept.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "1 failed, 1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    passed_dir, failed_dir = re.findall(r"RECORDINGS (\S+)", r.stdout)
    assert not os.path.exists(passed_dir)
    assert os.path.exists(os.path.join(failed_dir, "marker.pcapng"))
    assert f"lnrr recordings kept in {failed_dir}" in r.stdout + r.stderr
