"""`LnrrProxy`: one `lnrr record` process between node a (which dials it) and node b (upstream)."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, List, Optional, Union

from pyln.client import LightningRpc

Secret = Union[bytes, str]


class LnrrError(Exception):
    """lnrr did not start, or did not stop cleanly; the message carries its stderr."""


def write_key(directory: Path, name: str, secret: Secret) -> Path:
    """Writes a node secret (32 bytes, or 64 hex digits) as an owner-only lnrr key file."""
    hexed = secret.hex() if isinstance(secret, (bytes, bytearray)) else secret.strip().lower()
    if len(hexed) != 64:
        raise ValueError(f"a node secret is 32 bytes (64 hex digits); got {len(hexed)} hex digits")
    path = Path(directory) / f"{name}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(hexed + "\n")
    return path


class LnrrProxy:
    """Starts `lnrr record` listening on a free local port in front of node b.

    `b_address` is b's `NODEID@HOST:PORT`; `b_secret` is b's node secret (lnrr answers a as b, so it
    must hold it), `a_secret` a's (optional: with it, b sees a's real node id). The control socket
    is always on, so `rpc` (pyln-client's `LightningRpc`) can call every lnrr method, and plugins'
    methods. Recordings go under `directory`/recordings.
    """

    def __init__(self, lnrr_bin: str, directory: Path, b_address: str, b_secret: Secret,
                 a_secret: Optional[Secret] = None, rules: Optional[Path] = None,
                 plugins: Iterable[str] = (), extra_args: Iterable[str] = (), start_timeout: float = 60.0):
        self.directory = Path(directory)
        self.keys = self.directory / "keys"
        self.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_key(self.keys, "b", b_secret)
        if a_secret is not None:
            write_key(self.keys, "a", a_secret)
        self.recordings_dir = self.directory / "recordings"
        self.control = self.directory / "lnrr.sock"
        args = [lnrr_bin, "record", "--listen", "127.0.0.1:0", "--upstream", b_address, "--keys", str(self.keys),
                "--out", str(self.recordings_dir), "--control", str(self.control)]
        if rules is not None:
            args += ["--rules", str(rules)]
        for plugin in plugins:
            args += ["--plugin", plugin]
        args += list(extra_args)
        self.lnrr_bin = lnrr_bin
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._stderr: List[str] = []
        self._lines: List[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, args=(self.process.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr), daemon=True).start()
        listening = self._wait_listening(start_timeout)
        host, _, port = listening["address"].rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.rpc = LightningRpc(str(self.control))

    def _pump(self, stream, sink):
        for line in stream:
            with self._cv:
                sink.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def _wait_listening(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self._lines:
                    if line.startswith("{") and json.loads(line).get("event") == "listening":
                        return json.loads(line)
                if self.process.poll() is not None:
                    self._cv.wait(0.2)   # let the last stderr lines arrive
                    raise LnrrError(f"lnrr record exited with status {self.process.returncode}: {self.stderr}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LnrrError(f"lnrr record did not start listening within {timeout}s: {self.stderr}")
                self._cv.wait(min(left, 0.2))

    @property
    def stderr(self) -> str:
        """Everything lnrr wrote on stderr so far (its log)."""
        with self._cv:
            return "\n".join(self._stderr)

    @property
    def address(self) -> str:
        """Where node a dials: HOST:PORT."""
        return f"{self.host}:{self.port}"

    def recordings(self) -> List[Path]:
        """Every session's recording so far, oldest first."""
        return sorted(self.recordings_dir.glob("*.pcapng"), key=lambda p: p.stat().st_mtime)

    def session_recording(self, session: Optional[int] = None, timeout: float = 20.0) -> Path:
        """The recording of `session` (default: the first session), as `listsessions` names it."""
        deadline = time.monotonic() + timeout
        while True:
            sessions = self.rpc.call("listsessions")["sessions"]
            chosen = [s for s in sessions if session is None or s["id"] == session]
            if chosen and chosen[0].get("recording"):
                return Path(chosen[0]["recording"])
            if time.monotonic() > deadline:
                raise LnrrError(f"no recording for session {session or 'any'} after {timeout}s: {sessions}")
            time.sleep(0.05)

    def show(self, recording: Path) -> List[dict]:
        """`lnrr show --json`: one dict per recorded message or event."""
        r = subprocess.run([self.lnrr_bin, "show", "--json", str(recording)], capture_output=True, text=True, timeout=120)
        if r.returncode not in (0, 1):
            raise LnrrError(f"lnrr show failed ({r.returncode}): {r.stderr}")
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def stop(self, timeout: float = 30.0) -> int:
        """Ends every session (SIGTERM: recordings are closed cleanly) and waits for lnrr to exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise LnrrError(f"lnrr record did not stop within {timeout}s after SIGTERM: {self.stderr}")
        return self.process.returncode

    def discard_recordings(self):
        shutil.rmtree(self.recordings_dir, ignore_errors=True)
