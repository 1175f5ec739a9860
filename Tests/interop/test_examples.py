"""Every command example in README.md, docs/*.md and `lnrr help COMMAND` runs to completion as typed.

How documents are read (the conventions are in README.md's "Examples" note):
- ```sh blocks: every line is a command (`#` comment lines skipped; `\\` continuations and
  heredocs belong to their command).
- ```console blocks: lines starting with `$ ` are commands (with their continuation lines); the
  other lines are output and are not checked.
- ```yaml blocks whose first line is `# NAME.yaml` are files later commands use: they are written
  when the block is reached, as a reader would save them.
- An HTML comment on the line before a block changes how it runs:
  `<!-- example: exit N -->` the block's last command is expected to exit N (every other command
  must exit 0); `<!-- example: skip REASON -->` the block is not run (the reason is required and
  every skipped block is listed by `test_skipped_blocks_are_few_and_explained`).

How they run: each document gets a fresh copy of the repository (its git-tracked files) as its
folder, with the lnrr under test first on PATH, and its blocks run in order in one bash session, the
way a reader types them: a command is typed when the previous one has finished; a command ending in
`&` goes to the background, and the next one is typed once it has printed something and gone quiet
(a listening line, a connected line) -- what a person at a terminal waits for. The fixed ports of
the examples (9735, 9736) become free ports, so runs do not collide. Every command has a time limit:
one that hangs fails the test. At the end of each block its background commands are stopped
(SIGTERM).

Help examples are the lines under `Example:`/`Examples:` in each command's help; those that need no
network (no --connect, --listen, --upstream, --route, ctl or record) run in a folder prepared with
the files their placeholders name.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO, free_port, lnrr_bin

DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
COMMAND_TIMEOUT = 120.0
BACKGROUND_FIRST_OUTPUT = 30.0
BACKGROUND_QUIET = 1.5


# ---------------------------------------------------------------------------------------------
# Reading documents


class Block:
    def __init__(self, doc: Path, line: int, lang: str, text: str, marker: str | None):
        self.doc, self.line, self.lang, self.text, self.marker = doc, line, lang, text, marker

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        if self.marker and self.marker.startswith("skip"):
            return self.marker[len("skip"):].strip(" :")
        return None

    @property
    def expected_exit(self) -> int:
        m = re.fullmatch(r"exit (\d+)", self.marker or "")
        return int(m.group(1)) if m else 0

    def commands(self) -> list[str]:
        lines = self.text.split("\n")
        if self.lang == "console":
            # Keep commands and their continuation lines; drop output.
            kept, continuing = [], False
            for line in lines:
                if line.startswith("$ "):
                    kept.append(line[2:])
                elif continuing:
                    kept.append(line)
                else:
                    continue
                continuing = kept[-1].rstrip().endswith("\\")
            lines = kept
        return split_commands(lines)


def split_commands(lines: list[str]) -> list[str]:
    """Joins continuation lines and heredoc bodies to their commands; drops comments and blanks."""
    commands, i = [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command = line
        while command.rstrip().endswith("\\") and i < len(lines):
            command += "\n" + lines[i]
            i += 1
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)", command)
        if heredoc:
            end = heredoc.group(1)
            while i < len(lines):
                command += "\n" + lines[i]
                i += 1
                if lines[i - 1].strip() == end:
                    break
        commands.append(command)
    return commands


def read_blocks(doc: Path) -> list[Block]:
    blocks, lines = [], doc.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        marker = None
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0:
            mm = re.fullmatch(r"\s*<!--\s*example:\s*(.*?)\s*-->\s*", lines[k])
            if mm:
                marker = mm.group(1)
        blocks.append(Block(doc, start + 1, lang, "\n".join(lines[start + 1:j]), marker))
        i = j + 1
    return blocks


def runnable(blocks):
    return [b for b in blocks if b.lang in ("sh", "console") and b.skip_reason is None]


# ---------------------------------------------------------------------------------------------
# A bash session typed into


class Session:
    """One bash process, fed commands the way a person types them; stdout and stderr merged."""

    def __init__(self, cwd: Path, env: dict):
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.last_output = time.monotonic()
        self.cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.last_output = time.monotonic()
                self.cv.notify_all()

    def _type(self, text: str):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def tail(self, n=40) -> str:
        with self.cv:
            return "\n".join(self.lines[-n:])

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> int:
        """Runs a foreground command (stdin from /dev/null, so it cannot eat what is typed next)."""
        marker = f"__example_{uuid.uuid4().hex}_"
        with self.cv:
            start = len(self.lines)
        self._type("{ " + command + "\n} </dev/null; echo " + marker + "$?")
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for line in self.lines[start:]:
                    if marker in line:
                        return int(line.split(marker, 1)[1].strip() or "0")
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"did not finish within {timeout:.0f} s")
                self.cv.wait(min(left, 1.0))

    def background(self, command: str):
        """Starts `command &` and waits until it has printed something and gone quiet."""
        with self.cv:
            start = len(self.lines)
        self._type(command)
        deadline = time.monotonic() + BACKGROUND_FIRST_OUTPUT
        with self.cv:
            while len(self.lines) == start:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"background command printed nothing within {BACKGROUND_FIRST_OUTPUT:.0f} s")
                self.cv.wait(left)
            while time.monotonic() - self.last_output < BACKGROUND_QUIET:
                self.cv.wait(BACKGROUND_QUIET)

    def stop_background(self):
        """Stops everything still running in the background. SIGTERM, not Ctrl-C's SIGINT: a
        non-interactive shell starts background jobs with SIGINT ignored."""
        self.run("kill $(jobs -p) 2>/dev/null; wait", timeout=30)

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def repository_copy(dest: Path) -> Path:
    """The repository's tracked (and new, not ignored) files, as a reader's clone has them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if not src.exists():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    # The Python tools (handover-node) find pyln-proto in the repository's .venv, as in a clone after tools/test.
    (dest / ".venv").symlink_to((REPO / ".venv").resolve())
    return dest


def session_env(tmp: Path) -> dict:
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "lnrr").exists():
        (bindir / "lnrr").symlink_to(lnrr_bin())
    env = dict(os.environ)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    env["COLUMNS"] = "200"
    # A home of its own: examples that install things for the user (lnrr wireshark --install) stay here.
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    env.pop("LNRR_CONTROL", None)
    return env


def run_blocks(blocks: list[Block], folder: Path, env: dict):
    ports = {"9735": str(free_port()), "9736": str(free_port())}
    session = Session(folder, env)
    try:
        for block in blocks:
            if block.lang == "yaml":
                first = block.text.split("\n", 1)[0]
                m = re.fullmatch(r"#\s*([\w.-]+\.ya?ml)\s*", first)
                if m:
                    (folder / m.group(1)).write_text(block.text + "\n")
                continue
            if block.lang not in ("sh", "console") or block.skip_reason is not None:
                continue
            commands = block.commands()
            assert commands, f"{block.where}: a {block.lang} block without commands"
            for n, command in enumerate(commands):
                typed = command
                for fixed, port in ports.items():
                    typed = typed.replace(fixed, port)
                last = n == len(commands) - 1
                try:
                    if re.search(r"(?<![&|])&\s*(#.*)?$", typed):
                        session.background(typed)
                        continue
                    status = session.run(typed)
                except TimeoutError as e:
                    pytest.fail(f"{block.where}: `{command}` {e}\n--- output:\n{session.tail()}")
                want = block.expected_exit if last else 0
                assert status == want, (f"{block.where}: `{command}` exited {status}, expected {want}\n"
                                        f"--- output:\n{session.tail()}")
            session.stop_background()
    finally:
        session.close()


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_document_examples_run_as_typed(doc, tmp_path):
    blocks = read_blocks(doc)
    if not runnable(blocks):
        # A document with no runnable example must say why for each of its blocks (or have none).
        assert all(b.lang not in ("sh", "console") or b.skip_reason for b in blocks)
        return
    folder = repository_copy(tmp_path / "clone")
    run_blocks(blocks, folder, session_env(tmp_path))


def test_skipped_blocks_are_few_and_explained():
    skipped = [(b.where, b.skip_reason) for doc in DOCS for b in read_blocks(doc) if b.skip_reason is not None]
    for where, reason in skipped:
        assert len(reason) > 10, f"{where}: `<!-- example: skip -->` needs a reason"
    ran = sum(len(runnable(read_blocks(doc))) for doc in DOCS)
    print("\n".join(f"not run: {where}: {reason}" for where, reason in skipped))
    # The point is to run the examples: skipping must stay the exception.
    assert len(skipped) <= 4 and ran >= 8, (skipped, ran)


def test_every_shell_block_is_sh_or_console():
    """A command block in another language (bash, shell, none) would escape this test."""
    for doc in DOCS:
        for b in read_blocks(doc):
            first = b.text.lstrip().split("\n", 1)[0]
            if b.lang in ("", "bash", "shell", "text") and re.match(r"\$?\s*(lnrr|tools/|tshark|swift) ", first):
                # The synopsis of `lnrr replay` (usage grammar, not a command) is the one allowed form.
                assert "[" in b.text and "|" in b.text, f"{b.where}: commands belong in ```sh or ```console blocks"


def help_examples(lnrr: str) -> list[tuple[str, str]]:
    """(command, example) for every line under Example(s): in every command's help."""
    env = dict(os.environ, COLUMNS="400")

    def help_text(words):
        return subprocess.run([lnrr, "help", *words], capture_output=True, text=True, env=env, check=True).stdout

    def subcommands(text):
        section = re.search(r"\nSUBCOMMANDS:\n(.*?)(\n\n|\Z)", text, re.S)
        return [] if not section else [l.split()[0] for l in section.group(1).split("\n")
                                       if l.startswith("  ") and not l.startswith("   ") and l.split()]

    found, queue = [], [[]]
    while queue:
        words = queue.pop(0)
        text = help_text(words)
        queue += [words + [s] for s in subcommands(text) if s != "help"]
        lines = text.split("\n")
        for i, line in enumerate(lines):
            inline = re.match(r"\s*Examples?:\s*(\S.*)$", line)
            if inline:
                found.append((" ".join(words), inline.group(1)))
            elif re.match(r"\s*Examples?:\s*$", line):
                j, pending = i + 1, ""
                while j < len(lines) and lines[j].startswith("  ") and lines[j].strip():
                    pending += lines[j].strip()
                    if pending.endswith("\\"):
                        pending += "\n"
                    else:
                        found.append((" ".join(words), pending))
                        pending = ""
                    j += 1
    return found


# Needs a live node or never ends: a dial or listen (lnrr's flags, or the exported test's LNRR_CONNECT /
# LNRR_LISTEN), a proxy, its control socket, or show --follow.
NETWORK = re.compile(r"--connect|--listen|--upstream|--route|--follow|\bctl\b|\brecord\b|--socket|LNRR_CONNECT|LNRR_LISTEN")


def test_help_examples_run_as_typed(lnrr, tmp_path):
    examples = help_examples(lnrr)
    commands_with_examples = {c for c, _ in examples}
    # Every command with a discussion of its own shows how it is used.
    for needed in ("decode", "encode", "list", "show", "replay", "peer", "keys new", "keys id", "ctl", "record"):
        assert needed in commands_with_examples, f"`lnrr help {needed}` has no Example"
    offline = [(c, e) for c, e in examples if not NETWORK.search(e)]
    assert len(offline) >= 10, offline

    # The files the placeholders name: a real recording, key files, a rule file.
    folder = repository_copy(tmp_path / "clone")
    recording = "recordings/examples/custommsg-during-closing.pcapng"
    for name in ("FILE", "rec.pcapng", "s1.pcapng", "s2.pcapng",
                 "recordings/20261124T101502Z_03ab12cd_02ef34aa_0001.pcapng"):
        shutil.copy(folder / recording, folder / name)
    (folder / "variation.yaml").write_text("rules:\n  - name: no-custom\n    match: {custom: true}\n    action: drop\n")
    (folder / "dev-disconnect").write_text("-WIRE_COMMITMENT_SIGNED\n+WIRE_SHUTDOWN*2\n")
    session = Session(folder, session_env(tmp_path))
    try:
        for command, example in offline:
            if "keys id" in example:
                session.run("test -e keys/alice.key || lnrr keys new --out keys/alice.key >/dev/null")
            if "keys new" in example:
                session.run("rm -f keys/alice.key")
            try:
                status = session.run(example, timeout=60)
            except TimeoutError as e:
                pytest.fail(f"`lnrr help {command}`: `{example}` {e}\n{session.tail()}")
            assert status == 0, f"`lnrr help {command}`: `{example}` exited {status}\n{session.tail()}"
    finally:
        session.close()


def test_rule_file_examples_are_valid(lnrr, tmp_path):
    """Every YAML block that is a whole rule file (it has a top-level `rules:`) passes `lnrr rules
    check`; fragments (an `action:` alone) are shown in the context of a rule and are not files."""
    checked = 0
    for doc in DOCS:
        for b in read_blocks(doc):
            if b.lang != "yaml" or not re.search(r"^rules:\s*$", b.text, re.M):
                continue
            path = tmp_path / f"block{checked}.yaml"
            path.write_text(b.text + "\n")
            r = subprocess.run([lnrr, "rules", "check", str(path)], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, f"{b.where}: rules check exited {r.returncode}: {r.stdout}{r.stderr}"
            checked += 1
    assert checked >= 6
