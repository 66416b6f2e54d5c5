"""Job discovery, trust checks, the compiled-code cache and hot reload.

A job is `<jobs_dir>/<name>.py` or a package `<jobs_dir>/<name>/__init__.py`.
Jobs are loaded by path, never through sys.path, so a job name can only ever
mean a file in the jobs folder. Like cron, a job file (and the folder) that
someone else could have written is refused rather than run.
"""

import ast
import hashlib
import logging
import os
import re
import threading
from pathlib import Path

from afterd import jobfiles
from afterd.jobfiles import CodeCache, JobError, check_trusted, default_trusted_uids  # noqa: F401 (the API)

log = logging.getLogger("after.jobs")

# Editors write through these (vim's swap and its "4913" write test, emacs'
# lock and backup files); they never hold a job.
EDITOR_LEFTOVERS = re.compile(r"(\.sw[a-p]x?|~|\.tmp)$|^(\.#|#|\.)|^4913$")

DEBOUNCE_S = 0.25


def resolve(jobs_dir, name, trusted_uids: set[int] | None = None) -> Path:
    """The file to run for job `name`, or JobError saying why there is none."""
    return Path(jobfiles.resolve(jobs_dir, name, trusted_uids))


def is_job_source(path: str, jobs_dir: str) -> bool:
    """True for a .py file that could hold (part of) a job; editors' scratch files are not."""
    rel = os.path.relpath(path, jobs_dir)
    parts = rel.split(os.sep)
    if rel.startswith("..") or "__pycache__" in parts:
        return False
    base = parts[-1]
    return base.endswith(".py") and not EDITOR_LEFTOVERS.search(base)


def snapshot(jobs_dir) -> dict[str, str]:
    """Content hash of every job source under jobs_dir, by relative path."""
    hashes = {}
    for dirpath, dirnames, filenames in os.walk(jobs_dir):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            if not is_job_source(path, jobs_dir):
                continue
            try:
                with open(path, "rb") as f:
                    hashes[os.path.relpath(path, jobs_dir)] = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                continue   # removed while we looked: the next event covers it
    return hashes


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Relative paths added, changed or removed between two snapshots, sorted."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


class JobWatcher:
    """Calls on_change(changed_paths) once the jobs folder's job sources really changed.

    Events are debounced (an editor's save is several writes) and compared by
    content hash, so touching, opening or rewriting identical content is no change.
    """

    def __init__(self, jobs_dir, on_change, debounce_s: float = DEBOUNCE_S):
        self.jobs_dir = str(jobs_dir)
        self.on_change = on_change
        self.debounce_s = debounce_s
        self._hashes = snapshot(self.jobs_dir)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._observer = None

    def start(self):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                watcher._event(event)

        self._observer = Observer()
        self._observer.daemon = True
        self._observer.schedule(Handler(), self.jobs_dir, recursive=True)
        self._observer.start()

    def stop(self):
        with self._lock:
            if self._timer:
                self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    def _event(self, event):
        # Reading a file raises opened/closed_no_write on watchdog >= 2.3 (inotify):
        # never a change, and reacting to our own reads would loop. Same rule as
        # dramatiq's watcher.py (watchdog issues #346 and #949).
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if not (event.is_directory or any(p and is_job_source(p, self.jobs_dir) for p in paths)):
            return
        with self._lock:
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce_s, self.rescan)
            self._timer.daemon = True
            self._timer.start()

    def rescan(self) -> list[str]:
        """Compare the folder with the last snapshot; report and return what changed."""
        hashes = snapshot(self.jobs_dir)
        changed = diff(self._hashes, hashes)
        self._hashes = hashes
        if changed:
            try:
                self.on_change(changed)
            except Exception:
                log.exception("job reload handler failed")
        return changed


# ---- what cannot be loaded (after jobs; the heartbeat's jobs_broken) -------------------------

MAX_BROKEN_REPORTED = 20      # the heartbeat stays small whatever the folder holds
MAX_PROBLEM_CHARS = 200


def job_names(jobs_dir) -> list[str]:
    root = Path(jobs_dir)
    names = {p.stem for p in root.glob("*.py")} | {p.parent.name for p in root.glob("*/__init__.py")}
    return sorted(n for n in names if not n.startswith("_"))


def job_state(root, name: str, trusted_uids: set[int] | None = None) -> str:
    """'ok', or why job `name` of the folder cannot run: 'syntax error, line 12: invalid
    syntax', 'refused: ...' (the trust checks), 'no run(task) function'."""
    try:
        path = resolve(root, name, trusted_uids)
        tree = ast.parse(path.read_bytes(), str(path))
    except SyntaxError as e:
        return f"syntax error, line {e.lineno}: {e.msg}"
    except ValueError as e:
        return f"cannot compile: {e}"
    except OSError as e:
        return f"cannot read: {e.strerror}"
    except JobError as e:   # refused by the trust checks, or not a job name
        return f"refused: {e}"
    if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run"
               for node in tree.body) and not defines_name(tree, "run"):
        return "no run(task) function"
    return "ok"


def defines_name(tree, name: str) -> bool:
    """True if the module binds `name` at top level by assignment or import (run = ...)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def broken_jobs(jobs_dir, trusted_uids: set[int] | None = None) -> dict[str, str]:
    """{job: why it cannot run} for the folder's job files that cannot (at most
    MAX_BROKEN_REPORTED, each reason cut short): what a worker's heartbeat reports."""
    if not os.path.isdir(jobs_dir):
        return {}
    broken = {}
    for name in job_names(jobs_dir):
        state = job_state(jobs_dir, name, trusted_uids)
        if state != "ok":
            broken[name] = state[:MAX_PROBLEM_CHARS]
            if len(broken) >= MAX_BROKEN_REPORTED:
                break
    return broken
