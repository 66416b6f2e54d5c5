"""Workers in the background: through systemd where it runs, else as daemons with pid files.

Under systemd the unit `after@NAME` is the worker and journald keeps its log; this
module only drives `systemctl` and `journalctl`. Elsewhere `after start NAME -b`
starts `after start NAME` detached (its own session, stdin closed, output appended
to a log file) and records its pid in RUN_DIR/NAME.pid, next to RUN_DIR/NAME.log.
RUN_DIR is $AFTER_RUN_DIR, else /run/after for root, else $XDG_RUNTIME_DIR/after.

Every function returns an exit code or raises DaemonError (one line for the user).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from afterd.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

# systemd instance names and our file names: keep them to a safe alphabet.
WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}\Z")
EARLY_EXIT_WATCH_S = 10.0    # how long `start -b` watches for a worker that dies before it is ready
POLL_S = 0.05


class DaemonError(Exception):
    """One line for the user; `code` is the exit code to leave with."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code


def check_worker_name(name: str) -> str:
    if not WORKER_NAME.match(name):
        raise DaemonError(f"{name!r} is not a usable worker name: use letters, digits and _ . @ -, "
                          "starting with a letter or digit", code=EXIT_USAGE)
    return name


# ---- which mode ---------------------------------------------------------------------------

def systemd_running() -> bool:
    """True when this machine was booted with systemd (sd_booted()'s test) and systemctl exists."""
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None


def unit(name: str) -> str:
    return f"after@{name}"


# ---- under systemd ------------------------------------------------------------------------

def _run(argv: list[str]) -> int:
    try:
        return subprocess.call(argv)
    except OSError as e:
        raise DaemonError(f"cannot run {argv[0]}: {e.strerror}") from None


def systemd_start(name: str) -> int:
    return _run(["systemctl", "start", unit(name)])


def systemd_stop(name: str) -> int:
    return _run(["systemctl", "stop", unit(name)])


def systemd_log(name: str, follow: bool, lines: int | None, task: str | None = None) -> int:
    argv = ["journalctl", "-u", unit(name)]
    if task is not None:
        argv.append(f"TASK_ID={task}")   # the journal field of every line about a task (journald.py)
    if follow:
        argv.append("-f")
    if lines is not None:
        argv += ["-n", str(lines)]
    return _run(argv)


def systemd_workers() -> list[tuple[str, str, str]]:
    """(name, active state, STATUS= line) for every after@ unit that is active, failed or changing."""
    try:
        listing = subprocess.run(
            ["systemctl", "list-units", "after@*", "--plain", "--no-legend", "--no-pager"],
            capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise DaemonError(f"systemctl list-units failed: {getattr(e, 'stderr', '') or e}".strip()) from None
    workers = []
    for line in listing.splitlines():
        columns = line.split()
        if not columns or not columns[0].startswith("after@"):
            continue
        unit_name = columns[0]
        name = unit_name[len("after@"):].removesuffix(".service")
        active = columns[2] if len(columns) > 2 else "?"
        status = subprocess.run(["systemctl", "show", "-p", "StatusText", "--value", unit_name],
                                capture_output=True, text=True).stdout.strip()
        workers.append((name, active, status))
    return workers


JOURNALD_CLEAN_TEXT = """\
The log of after@{name} is kept by journald, not by after, so `after clean` deletes nothing.
journald stores the messages of all units together and removes old ones by age and size
(SystemMaxUse=, MaxRetentionSec= in journald.conf); it cannot delete one unit's messages.
To shrink the journal (this affects every unit on the machine, not only after@{name}):
  journalctl --vacuum-time=2weeks     # drop archived entries older than two weeks
  journalctl --vacuum-size=500M       # or keep at most 500 MB of archived journal
Add --rotate first to include the entries currently being written."""


# ---- without systemd: pid and log files ----------------------------------------------------

def run_dir() -> Path:
    explicit = os.environ.get("AFTER_RUN_DIR")
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/run/after")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise DaemonError("XDG_RUNTIME_DIR is not set: set AFTER_RUN_DIR to a folder for pid and log files")
    return Path(runtime) / "after"


@dataclass(frozen=True)
class Files:
    pid: Path
    log: Path


def files(name: str) -> Files:
    base = run_dir()
    return Files(pid=base / f"{name}.pid", log=base / f"{name}.log")


def process_alive(pid: int) -> bool:
    """True if pid is a live process (a zombie counts as gone: it has finished)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True        # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def live_pid(name: str) -> int | None:
    """The pid of worker NAME if its pid file names a live process; a stale file is removed."""
    pid_path = files(name).pid
    pid = read_pid(pid_path)
    if pid is None:
        return None
    if process_alive(pid):
        return pid
    pid_path.unlink(missing_ok=True)
    return None


def daemon_start(name: str, worker_argv: list[str]) -> int:
    """Start `worker_argv` (an `after start NAME` command) detached; record its pid."""
    paths = files(name)
    pid = live_pid(name)
    if pid is not None:
        raise DaemonError(f"worker {name} is already running (pid {pid}); `after stop {name}` first")
    paths.pid.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    # Append mode: `after clean` truncates the file under the running worker, and
    # O_APPEND makes its next write land at the new end instead of leaving a hole.
    with open(paths.log, "ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(worker_argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True, cwd="/")
    tmp = paths.pid.with_suffix(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(paths.pid)
    # A worker that cannot start (bad settings, CouchDB down) dies before it is ready:
    # say so here rather than leaving the user to find out from `after list`. Watched
    # until it says ready, not for a fixed second: on a loaded machine Python's imports
    # alone can take that long.
    deadline = time.monotonic() + EARLY_EXIT_WATCH_S
    while time.monotonic() < deadline and not said_ready(paths.log, log_start, name):
        code = proc.poll()
        if code is not None:
            paths.pid.unlink(missing_ok=True)
            last = last_line(paths.log)
            raise DaemonError(f"worker {name} exited before it was ready, with code {code}"
                              + (f": {last}" if last else f"; see {paths.log}"))
        time.sleep(POLL_S)
    print(f"worker {name} started in the background (pid {proc.pid}); log: {paths.log}")
    return EXIT_OK


def said_ready(path: Path, offset: int, name: str) -> bool:
    """Whether the worker's log, from `offset` on, has its "ready" line (Worker.start)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f"worker {name} ready:".encode() in f.read()
    except OSError:
        return False


def last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def daemon_stop(name: str, grace_s: float) -> int:
    """SIGTERM, then wait up to grace_s for running jobs to finish and the worker to exit."""
    pid = live_pid(name)
    if pid is None:
        raise DaemonError(f"worker {name} is not running (no live pid file in {run_dir()})")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            raise DaemonError(f"worker {name} (pid {pid}) is still finishing after {grace_s:g}s; "
                              f"wait, or end it now with: kill -KILL {pid}")
        time.sleep(POLL_S)
    files(name).pid.unlink(missing_ok=True)
    print(f"worker {name} stopped")
    return EXIT_OK


class TaskLines:
    """The lines of a text log that are about one task, fed in chunks (pure).

    A line is about the task when it says so the way after writes it: "[task ID] ..."
    (a line with the task_id field), "task ID: ..." / "task ID ..." (worker lines that
    name it), "job NAME task ID: ..." (the job's own logger), "run ID@..." (a run of
    it). The lines that follow it without a timestamp of their own (a traceback)
    belong to it too.
    """

    RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")   # PLAIN_FORMAT's asctime

    def __init__(self, task_id: str):
        tid = re.escape(task_id)
        self.about = re.compile(rf"\[task {tid}\]|\btask {tid}(?=[\s:])|\brun {tid}@")
        self._partial = ""
        self._in_record = False

    def feed(self, text: str) -> list[str]:
        """The complete lines of `text` (with what came before) that are about the task."""
        text = self._partial + text
        lines = text.splitlines(keepends=True)
        self._partial = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        shown = []
        for line in lines:
            if self.RECORD_START.match(line):
                self._in_record = bool(self.about.search(line))
            elif self.about.search(line):
                self._in_record = True
            if self._in_record:
                shown.append(line)
        return shown


def daemon_log(name: str, follow: bool, lines: int | None, out=None, task: str | None = None) -> int:
    out = out or sys.stdout
    path = files(name).log
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DaemonError(f"worker {name} has no log file ({path}): was it started with `after start {name} -b`?") from None
    about = TaskLines(task) if task is not None else None
    with f:
        text = f.read().decode(errors="replace")
        shown = about.feed(text) if about else text.splitlines(keepends=True)
        if lines is not None:
            shown = shown[-lines:] if lines > 0 else []
        out.write("".join(shown))
        out.flush()
        while follow:
            chunk = f.read()
            if chunk:
                text = chunk.decode(errors="replace")
                out.write("".join(about.feed(text)) if about else text)
                out.flush()
                continue
            if f.tell() > os.stat(path).st_size:   # truncated by `after clean`: start over
                f.seek(0)
            time.sleep(0.2)
    return EXIT_OK


def daemon_workers() -> list[tuple[str, int, Path]]:
    """(name, pid, log) of every worker with a live pid file; stale pid files are removed."""
    try:
        pid_files = sorted(run_dir().glob("*.pid"))
    except OSError:
        return []
    workers = []
    for pid_file in pid_files:
        name = pid_file.stem
        pid = live_pid(name)
        if pid is not None:
            workers.append((name, pid, files(name).log))
    return workers


def daemon_clean(name: str) -> int:
    path = files(name).log
    try:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.truncate(0)
    except FileNotFoundError:
        raise DaemonError(f"worker {name} has no log file ({path}); nothing to clean") from None
    print(f"emptied {path} ({size} bytes); the worker keeps writing to it")
    return EXIT_OK
