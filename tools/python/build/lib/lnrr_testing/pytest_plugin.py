"""The pytest plugin (registered through the `pytest11` entry point): fixtures `lnrr_bin` and
`lnrr_proxy`.

    def test_custom_message(lnrr_proxy):
        proxy = lnrr_proxy(b_address=..., b_secret=..., a_secret=...)
        ... node a dials proxy.address ...
        proxy.rpc.call("listsessions")

Each proxy is stopped at teardown. Its recordings are deleted when the test passed and kept (their
folder is printed) when it failed.
"""
import os
import shutil
import sys

import pytest

from .proxy import LnrrProxy


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see at teardown whether the test itself failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"_lnrr_report_{report.when}", report)


@pytest.fixture(scope="session")
def lnrr_bin() -> str:
    """The lnrr executable: $LNRR_BIN, else `lnrr` on PATH. Missing is an error, not a skip."""
    path = os.environ.get("LNRR_BIN") or shutil.which("lnrr")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("lnrr not found: set LNRR_BIN to the binary (e.g. $(swift build --show-bin-path)/lnrr) or put lnrr on PATH")
    return path


@pytest.fixture
def lnrr_proxy(request, lnrr_bin, tmp_path_factory):
    """A factory: `lnrr_proxy(b_address=..., b_secret=..., a_secret=None, rules=None, plugins=(),
    extra_args=())` starts `lnrr record` in front of node b and returns an `LnrrProxy`."""
    started = []

    def start(**kwargs) -> LnrrProxy:
        directory = tmp_path_factory.mktemp("lnrr")
        proxy = LnrrProxy(lnrr_bin, directory, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    failed = getattr(request.node, "_lnrr_report_call", None) is None or request.node._lnrr_report_call.failed
    problems = []
    for proxy in started:
        try:
            status = proxy.stop()
            if status != 0:
                problems.append(f"lnrr record exited with status {status}: {proxy.stderr}")
        except Exception as e:  # noqa: BLE001 - reported below, after every proxy is stopped
            problems.append(str(e))
        if failed:
            print(f"lnrr recordings kept in {proxy.recordings_dir}", file=sys.stderr)
        else:
            proxy.discard_recordings()
    if problems and not failed:
        pytest.fail("; ".join(problems))
