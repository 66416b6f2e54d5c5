"""Logging to stderr that journald understands (design §7).

Under systemd, stderr is a stream to journald (JOURNAL_STREAM names it). journald
stamps each line itself and reads an sd-daemon "<N>" prefix as its priority, so
`journalctl -p warning` works: we write "<4>message" and no timestamp. Anywhere else
the lines carry a timestamp and the level name.

A line about one task says so: `log.info("ran", extra={"task_id": tid})`, or
`for_task(log, tid).info("ran")`, both give "[task <tid>] ran".
"""

import logging
import os
import sys

# sd-daemon(3) priorities; logging has no NOTICE level.
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
              (logging.INFO, 6), (logging.DEBUG, 7))
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def priority(levelno: int) -> int:
    """The sd-daemon priority for a logging level (levels in between round up in urgency)."""
    for threshold, prio in PRIORITIES:
        if levelno >= threshold:
            return prio
    return 7


def stream_is_journal(stream, env=os.environ) -> bool:
    """True when `stream` is the journald stream systemd connected (JOURNAL_STREAM=dev:ino).

    Compared with the stream's own device and inode, as systemd.exec(5) advises, so
    `after start x 2>file` under a unit still gets plain, timestamped lines.
    """
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class _TaskPrefix(logging.Formatter):
    """Adds "[task <id>] " when the record carries a task_id."""

    def formatMessage(self, record):
        task_id = getattr(record, "task_id", None)
        if task_id is not None and not getattr(record, "_after_tagged", False):
            record.message = f"[task {task_id}] {record.message}"
            record._after_tagged = True   # several handlers may format the same record
        return super().formatMessage(record)


class JournalFormatter(_TaskPrefix):
    """"<N>message", every line of it (a traceback too), so no line loses its priority."""

    def __init__(self):
        super().__init__("%(message)s")

    def format(self, record):
        text = super().format(record)
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


class PlainFormatter(_TaskPrefix):
    def __init__(self):
        super().__init__(PLAIN_FORMAT)


def parse_level(level) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[str(level).strip().lower()]
    except KeyError:
        raise ValueError(f"log level: {level!r} is not one of {', '.join(LEVELS)}") from None


def setup_logging(level="info", stream=None) -> logging.Handler:
    """Send the root logger to stderr (or `stream`), journald-aware; calling it again replaces it."""
    levelno = parse_level(level)   # bad input changes nothing
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if stream_is_journal(stream) else PlainFormatter())
    handler._after_handler = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_after_handler", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    return handler


def for_task(logger: logging.Logger, task_id: str) -> logging.LoggerAdapter:
    """A logger whose every line is about `task_id`."""
    return logging.LoggerAdapter(logger, {"task_id": task_id})
