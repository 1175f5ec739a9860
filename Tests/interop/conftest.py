"""Shared helpers for the interop suite: lnrr's binary, keys, ports and background processes.

The independent implementation on the other side of every connection is pyln-proto, Core Lightning's
own Python BOLT 8 code; the suite fails (never skips) when it or the lnrr binary is missing.
"""
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pyln.proto.wire import PrivateKey, connect as pyln_connect  # noqa: F401  (re-exported for tests)

REPO = Path(__file__).resolve().parents[2]


def lnrr_bin() -> str:
    path = os.environ.get("LNRR_BIN")
    if not path:
        raise RuntimeError("LNRR_BIN is not set: run the suite through tools/test")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"LNRR_BIN={path} is not an executable: build with `swift build` first")
    return path


@pytest.fixture(scope="session")
def lnrr() -> str:
    return lnrr_bin()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Key:
    """A node key held by the test: secret bytes, the pyln PrivateKey, node id and an lnrr key file."""

    def __init__(self, directory: Path, name: str, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)
        self.priv = PrivateKey(self.secret)
        self.node_id = self.priv.public_key().serializeCompressed().hex()
        self.path = Path(directory) / f"{name}.key"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.secret.hex() + "\n")


@pytest.fixture
def keys(tmp_path):
    """keys("a") makes (once) and returns a Key named a in the test's temporary folder."""
    made = {}
    keydir = tmp_path / "keys"
    keydir.mkdir(mode=0o700)

    def get(name: str) -> Key:
        if name not in made:
            made[name] = Key(keydir, name)
        return made[name]

    get.dir = keydir
    return get


def wait_for_port(port: int, timeout: float = 20.0, proc: "Proc | None" = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"process exited early ({proc.popen.returncode}): {proc.stderr_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Proc:
    """A background lnrr process whose stdout lines are collected as they come."""

    def __init__(self, args, **kw):
        self.args = [str(a) for a in args]
        self.popen = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
        self.lines: list[str] = []
        self._err: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, args=(self.popen.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.popen.stderr, self._err), daemon=True).start()

    def _pump(self, stream, sink):
        for line in stream:
            with self._cv:
                sink.append(line.rstrip("\n"))
                self._cv.notify_all()

    def json_lines(self):
        with self._cv:
            return [json.loads(l) for l in self.lines if l.startswith("{")]

    def wait_lines(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out; stdout so far: {self.lines[-5:]}, stderr: {self.stderr_text()}")
                self._cv.wait(left)

    def stderr_text(self) -> str:
        return "\n".join(self._err)

    def wait(self, timeout=60.0) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def procs():
    """Starts background processes and stops every one of them when the test ends."""
    started: list[Proc] = []

    def start(*args, **kw) -> Proc:
        p = Proc(args, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def run(*args, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r
