"""tools/python (the lnrr-testing pytest plugin): pip-installable, and its own tests pass.

The package is installed with pip into a scratch folder (not the shared venv), and pytest runs the
package's tests with only that folder added: the `lnrr_proxy` fixture must be found through the
installed `pytest11` entry point, as it is for a user after `pip install ./tools/python`.
"""
import os
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
