"""Job discovery, trust checks, the compiled-code cache and hot reload.

A job is `<jobs_dir>/<name>.py` or a package `<jobs_dir>/<name>/__init__.py`.
Jobs are loaded by path, never through sys.path, so a job name can only ever
mean a file in the jobs folder. Like cron, a job file (and the folder) that
someone else could have written is refused rather than run.
"""

import hashlib
import logging
import os
import re
import stat
import threading
from pathlib import Path

log = logging.getLogger("after.jobs")

JOB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Editors write through these (vim's swap and its "4913" write test, emacs'
# lock and backup files); they never hold a job.
EDITOR_LEFTOVERS = re.compile(r"(\.sw[a-p]x?|~|\.tmp)$|^(\.#|#|\.)|^4913$")

DEBOUNCE_S = 0.25


class JobError(Exception):
    """A job that cannot be run: str(e) is one line saying why. .type names the kind."""

    def __init__(self, message: str, kind: str = "JobError"):
        super().__init__(message)
        self.type = kind


def default_trusted_uids() -> set[int]:
    return {0, os.geteuid()}


def check_trusted(path: Path, trusted_uids: set[int], what: str) -> os.stat_result:
    """Refuse what someone else could have written, as cron does."""
    st = os.stat(path)
    if st.st_mode & stat.S_IWOTH:
        raise JobError(f"{what} {path} is world-writable: refusing to run it", "JobRefused")
    if st.st_uid not in trusted_uids:
        raise JobError(
            f"{what} {path} is owned by uid {st.st_uid}, not root or the worker's user: "
            "refusing to run it", "JobRefused")
    return st


def resolve(jobs_dir, name, trusted_uids: set[int] | None = None) -> Path:
    """The file to run for job `name`, or JobError saying why there is none."""
    trusted = default_trusted_uids() if trusted_uids is None else set(trusted_uids)
    if not isinstance(name, str) or not JOB_NAME.fullmatch(name):
        raise JobError(f"job name {name!r} is not a plain identifier "
                       "([A-Za-z_][A-Za-z0-9_]*)", "JobNotFound")
    root = Path(jobs_dir)
    try:
        real_root = root.resolve(strict=True)
    except OSError:
        raise JobError(f"jobs folder {root} does not exist", "JobNotFound") from None
    check_trusted(real_root, trusted, "jobs folder")
    for candidate, is_package in ((root / f"{name}.py", False), (root / name / "__init__.py", True)):
        if not os.path.lexists(candidate):
            continue
        real = Path(os.path.realpath(candidate))
        if real_root not in real.parents:
            raise JobError(f"job file {candidate} points outside the jobs folder {root}: "
                           "refusing to run it", "JobRefused")
        if not real.is_file():
            raise JobError(f"job file {candidate} is not a regular file", "JobNotFound")
        if is_package:
            check_trusted(real.parent, trusted, "job package")
        check_trusted(real, trusted, "job file")
        return real
    raise JobError(f"no job named {name!r} in {root} (looked for {name}.py and "
                   f"{name}/__init__.py)", "JobNotFound")


class CodeCache:
    """Compiled job code by path, revalidated against the file's stat on every use.

    A compile error is cached too, so a broken job fails every run with its
    SyntaxError instead of silently falling back to a previous version.
    clear() (hot reload) drops everything, for edits within one mtime tick.
    """

    def __init__(self):
        self._entries: dict[Path, tuple[tuple, object]] = {}

    def get(self, path: Path):
        """The code object for `path`; raises the file's SyntaxError (or OSError)."""
        st = os.stat(path)
        signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        entry = self._entries.get(path)
        if entry is None or entry[0] != signature:
            try:
                source = path.read_bytes()
                entry = (signature, compile(source, str(path), "exec", dont_inherit=True))
            except (SyntaxError, ValueError) as exc:   # ValueError: NUL bytes in the source
                entry = (signature, exc)
            self._entries[path] = entry
        if isinstance(entry[1], BaseException):
            raise entry[1]
        return entry[1]

    def clear(self):
        self._entries.clear()


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
