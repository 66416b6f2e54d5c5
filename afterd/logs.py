"""Logging to stderr that journald understands (design §7).

Under systemd, stderr is a stream to journald (JOURNAL_STREAM names it). journald
stamps each line itself and reads an sd-daemon "<N>" prefix as its priority, so
`journalctl -p warning` works: we write "<4>message" and no timestamp. Anywhere else
the lines carry a timestamp and the level name.

A line about one task says so: `log.info("ran", extra=about(tid, job, run_id))`, or
`for_task(log, tid).info("ran")`, both give "[task <tid>] ran". Under systemd, when
the journal's socket is there, records go to journald with those as fields
(TASK_ID=, JOB=, RUN_ID=, WORKER=: afterd/journald.py); the text is the same.
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


class TaskPrefixFormatter(logging.Formatter):
    """Adds "[task <id>] " when the record carries a task_id (and its text does not name it already)."""

    def formatMessage(self, record):
        # format() sets record.message afresh from the arguments on every call, so
        # several handlers formatting one record never prefix it twice.
        task_id = getattr(record, "task_id", None)
        if task_id is not None and not getattr(record, "_after_in_text", False):
            record.message = f"[task {task_id}] {record.message}"
        return super().formatMessage(record)


class JournalFormatter(TaskPrefixFormatter):
    """"<N>message", every line of it (a traceback too), so no line loses its priority."""

    def __init__(self):
        super().__init__("%(message)s")

    def format(self, record):
        text = super().format(record)
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


class PlainFormatter(TaskPrefixFormatter):
    def __init__(self):
        super().__init__(PLAIN_FORMAT)


def parse_level(level) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[str(level).strip().lower()]
    except KeyError:
        raise ValueError(f"log level: {level!r} is not one of {', '.join(LEVELS)}") from None


def setup_logging(level="info", stream=None, fields: dict | None = None, env=os.environ,
                  journal_socket: str | None = None) -> logging.Handler:
    """Send the root logger to stderr (or `stream`), journald-aware; calling it again replaces it.

    When `stream` is the journal's stream and its native socket exists, records go
    to journald with fields (`fields`, e.g. {"WORKER": name}, on every record);
    the stream handler stays as the fallback for a record that cannot be sent.
    """
    levelno = parse_level(level)   # bad input changes nothing
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    journal = stream_is_journal(stream, env)
    handler.setFormatter(JournalFormatter() if journal else PlainFormatter())
    if journal:
        from afterd import journald

        if journald.available(journal_socket):
            handler = journald.JournalHandler(handler, fields, journal_socket)
    handler._after_handler = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_after_handler", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    return handler


def about(task_id, job=None, run_id=None, in_text=False) -> dict:
    """`extra=` for a line about a task (and its job, and a run of it): journal fields under systemd.

    in_text: the message names the task already ("task %s: ..."), so the text gets no
    "[task <id>]" prefix and reads as it always did; only the journal fields are added.
    """
    extra = {"task_id": task_id}
    if job is not None:
        extra["job"] = job
    if run_id is not None:
        extra["run_id"] = run_id
    if in_text:
        extra["_after_in_text"] = True   # TaskPrefixFormatter adds no prefix
    return extra


def about_doc(doc: dict, run_id=None, in_text=False) -> dict:
    """about() for a task document: its id and its job's name, when it has one."""
    job = doc.get("job")
    name = job.get("name") if isinstance(job, dict) else None
    return about(doc.get("_id"), name if isinstance(name, str) else None, run_id, in_text)


def for_task(logger: logging.Logger, task_id: str, job=None, run_id=None) -> logging.LoggerAdapter:
    """A logger whose every line is about `task_id`."""
    return logging.LoggerAdapter(logger, about(task_id, job, run_id))
