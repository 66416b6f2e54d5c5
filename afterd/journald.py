"""Log records as journal entries with fields, through journald's native protocol (design §8b).

Under systemd a line about a task carries `TASK_ID=`, `JOB=`, `WORKER=` and, for a
run, `RUN_ID=`, so `journalctl -u after@manobi TASK_ID=<id>` tells one task's story.
A stream line on stderr cannot carry fields; a datagram to
/run/systemd/journal/socket in the native protocol can (systemd.journal-fields(7),
https://systemd.io/JOURNAL_NATIVE_PROTOCOL/). That protocol is a few lines of code, so
no new dependency: python3-systemd's JournalHandler speaks the same protocol
through a C extension, and would have to reach the venv the tests use as well.

Only records about a task take the socket; every other line stays on the stream.
journald attributes a datagram to its unit by reading the sender's cgroup from
/proc when the datagram is processed: a process that has exited by then (the
worker's last lines at stop, a job's child) leaves an entry without _SYSTEMD_UNIT,
which `journalctl -u` does not show. A stream is attributed when it is opened, so
the worker's lifecycle lines (starting, ready, stopped) stay where they always were,
and a task's lines can always be found by `journalctl TASK_ID=<id>` even without -u.
A record that cannot be sent (no socket, journald restarting) goes to the stream
handler given as `fallback`: the line is kept, only its fields are lost.
"""

import array
import errno
import fcntl
import logging
import os
import socket
import struct

from afterd.logs import TaskPrefixFormatter, priority

SOCKET_PATH = "/run/systemd/journal/socket"
# Record attributes (set with `extra=`) that become journal fields.
RECORD_FIELDS = (("task_id", "TASK_ID"), ("job", "JOB"), ("run_id", "RUN_ID"), ("worker", "WORKER"))
IDENTIFIER = "after"


def encode(fields: dict) -> bytes:
    """The native protocol's datagram for `fields` (str/bytes values; names are upper case)."""
    parts = []
    for name, value in fields.items():
        if value is None:
            continue
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        key = name.encode("ascii")
        if b"\n" in data:
            # Binary-safe form: the name, a newline, the length (64-bit little endian), the data.
            parts.append(key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key + b"=" + data + b"\n")
    return b"".join(parts)


def available(socket_path: str | None = None) -> bool:
    return os.path.exists(socket_path or SOCKET_PATH)


class JournalHandler(logging.Handler):
    """Sends each record to journald with its fields; `fields` are added to every record."""

    def __init__(self, fallback: logging.Handler, fields: dict | None = None,
                 socket_path: str | None = None):
        super().__init__()
        self.fallback = fallback
        self.fields = {k: v for k, v in (fields or {}).items() if v is not None}
        self.socket_path = socket_path or SOCKET_PATH
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.setFormatter(TaskPrefixFormatter("%(message)s"))

    def record_fields(self, record: logging.LogRecord) -> dict:
        fields = {"MESSAGE": self.format(record), "PRIORITY": priority(record.levelno),
                  "SYSLOG_IDENTIFIER": IDENTIFIER, "LOGGER": record.name,
                  "CODE_FILE": record.pathname, "CODE_LINE": record.lineno, "CODE_FUNC": record.funcName,
                  **self.fields}
        for attribute, name in RECORD_FIELDS:
            value = getattr(record, attribute, None)
            if value is not None:
                fields[name] = value
        return fields

    def emit(self, record):
        if getattr(record, "task_id", None) is None and "TASK_ID" not in self.fields:
            self.fallback.handle(record)   # not about a task: the stream (see the module's doc)
            return
        try:
            data = encode(self.record_fields(record))
            try:
                self.sock.sendto(data, self.socket_path)
            except OSError as e:
                if e.errno not in (errno.EMSGSIZE, errno.ENOBUFS):   # too big for one datagram
                    raise
                self._send_memfd(data)
        except OSError:
            self.fallback.handle(record)
        except Exception:
            self.handleError(record)

    def _send_memfd(self, data: bytes):
        """A large entry (a long traceback): journald takes it as a sealed memfd passed with the datagram."""
        fd = os.memfd_create("after-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, data)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                              0, self.socket_path)
        finally:
            os.close(fd)

    def close(self):
        try:
            self.sock.close()
        finally:
            super().close()
