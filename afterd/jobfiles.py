"""Finding a job's file, the trust checks, and its compiled code: what the zygote needs.

Imported by the zygote, which forks once per run. On this class of machine a
fork costs about 80 µs per MiB the forking process maps, so this module (and
everything the zygote imports) sticks to os and stat: no pathlib, re, logging
or hashlib (OpenSSL alone maps megabytes). jobs.py builds the rest on it.
"""

import os
import stat


class JobError(Exception):
    """A job that cannot be run: str(e) is one line saying why. .type names the kind."""

    def __init__(self, message: str, kind: str = "JobError"):
        super().__init__(message)
        self.type = kind


def default_trusted_uids() -> set[int]:
    return {0, os.geteuid()}


def is_job_name(name) -> bool:
    """[A-Za-z_][A-Za-z0-9_]*: an ASCII identifier, nothing else (no dots, no slashes)."""
    return isinstance(name, str) and name.isascii() and name.isidentifier()


def check_trusted(path, trusted_uids: set[int], what: str) -> os.stat_result:
    """Refuse what someone else could have written, as cron does."""
    st = os.stat(path)
    if st.st_mode & stat.S_IWOTH:
        raise JobError(f"{what} {path} is world-writable: refusing to run it", "JobRefused")
    if st.st_uid not in trusted_uids:
        raise JobError(
            f"{what} {path} is owned by uid {st.st_uid}, not root or the worker's user: "
            "refusing to run it", "JobRefused")
    return st


def resolve(jobs_dir, name, trusted_uids: set[int] | None = None) -> str:
    """The real path of the file to run for job `name`, or JobError saying why there is none."""
    trusted = default_trusted_uids() if trusted_uids is None else set(trusted_uids)
    if not is_job_name(name):
        raise JobError(f"job name {name!r} is not a plain identifier "
                       "([A-Za-z_][A-Za-z0-9_]*)", "JobNotFound")
    root = os.fspath(jobs_dir)
    if not os.path.isdir(root):
        raise JobError(f"jobs folder {root} does not exist", "JobNotFound")
    real_root = os.path.realpath(root)
    check_trusted(real_root, trusted, "jobs folder")
    for candidate, is_package in ((os.path.join(root, f"{name}.py"), False),
                                  (os.path.join(root, name, "__init__.py"), True)):
        if not os.path.lexists(candidate):
            continue
        real = os.path.realpath(candidate)
        if not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise JobError(f"job file {candidate} points outside the jobs folder {root}: "
                           "refusing to run it", "JobRefused")
        if not os.path.isfile(real):
            raise JobError(f"job file {candidate} is not a regular file", "JobNotFound")
        if is_package:
            check_trusted(os.path.dirname(real), trusted, "job package")
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
        self._entries: dict[str, tuple[tuple, object]] = {}

    def get(self, path):
        """The code object for `path`; raises the file's SyntaxError (or OSError)."""
        path = os.fspath(path)
        st = os.stat(path)
        signature = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        entry = self._entries.get(path)
        if entry is None or entry[0] != signature:
            try:
                with open(path, "rb") as f:
                    source = f.read()
                entry = (signature, compile(source, path, "exec", dont_inherit=True))
            except (SyntaxError, ValueError) as exc:   # ValueError: NUL bytes in the source
                entry = (signature, exc)
            self._entries[path] = entry
        if isinstance(entry[1], BaseException):
            raise entry[1]
        return entry[1]

    def clear(self):
        self._entries.clear()
