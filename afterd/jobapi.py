"""What a job sees: the `task` object handed to run(task), and how a run becomes an outcome.

Runs inside the forked child only. The zygote imports this module before it
forks, and every MiB it maps makes each fork slower, so logging and traceback
are imported only in a child that uses them (task.logger, a failed run).
"""

import json
import os
import sys
import types
from datetime import datetime, timezone

# journald reads "<N>" at the start of a stderr line as the priority (sd-daemon(3)),
# by logging level (DEBUG 10 ... CRITICAL 50).
JOURNAL_PRIORITY = {10: 7, 20: 6, 30: 4, 40: 3, 50: 2}
# The worker's own stderr, in a run's child: fd 2 there is the pipe that captures the
# job's output (zygote.py), and task.logger's lines keep going where they always went
# (journald with the task's fields under systemd), not into that output.
LOG_STREAM = None
LOG_FD = None   # in a run's child, the worker's stderr: LOG_STREAM is opened on it when first used


def log_stream():
    """Where task.logger writes: made on first use (most jobs never log, and a text
    stream built in every child costs each run its share)."""
    global LOG_STREAM
    if LOG_STREAM is None and LOG_FD is not None:
        LOG_STREAM = os.fdopen(LOG_FD, "w", buffering=1, encoding="utf-8", errors="replace")
    return LOG_STREAM or sys.stderr


def job_logger(job: str, task_id: str, worker: str | None = None, run_id: str | None = None):
    """A logger whose lines reach the worker's stderr tagged with the task id.

    Under systemd they go to journald with the fields TASK_ID, JOB, WORKER and RUN_ID
    (afterd/journald.py), so `journalctl TASK_ID=<id>` shows the job's own lines too.
    """
    import logging

    class JobFormatter(logging.Formatter):
        def __init__(self, tag: str, journal: bool):
            super().__init__(f"{tag}: %(levelname)s %(message)s")
            self.journal = journal

        def format(self, record):
            text = super().format(record)
            if self.journal:
                prefix = f"<{JOURNAL_PRIORITY.get(record.levelno, 6)}>"
                text = "\n".join(prefix + line for line in text.splitlines())
            return text

    logger = logging.getLogger(f"after.job.{job}")
    logger.handlers.clear()
    stream = log_stream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JobFormatter(f"job {job} task {task_id}",
                                       bool(os.environ.get("JOURNAL_STREAM"))))
    from afterd import journald, logs

    if logs.stream_is_journal(stream) and journald.available():
        handler = journald.JournalHandler(handler, {"TASK_ID": task_id, "JOB": job, "WORKER": worker,
                                                    "RUN_ID": run_id})
        handler.setFormatter(JobFormatter(f"job {job} task {task_id}", False))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def parse_when(value) -> datetime | None:
    """The task's date as an aware datetime (UTC when the text has no offset)."""
    if value is None or isinstance(value, datetime):
        when = value
    elif isinstance(value, (int, float)):
        when = datetime.fromtimestamp(value, timezone.utc)
    else:
        text = str(value)
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when


class JobTask:
    """The `task` a job's run(task) receives.

    done(result) / error(message) are for jobs written in the original's event
    style; the first outcome reported wins.
    """

    def __init__(self, fields: dict, job: str, run_id: str | None = None):
        self.id = fields.get("id")
        self.worker = fields.get("worker")
        self._date = fields.get("date")
        self.arguments = fields.get("arguments")
        self.doc = fields.get("doc")   # already a copy: it came over a pipe as JSON
        self.job = job
        self.run_id = run_id
        self._logger = None
        self.outcome: dict | None = None

    @property
    def date(self) -> datetime | None:
        if not isinstance(self._date, datetime) and self._date is not None:
            self._date = parse_when(self._date)
        return self._date

    @property
    def logger(self):
        if self._logger is None:
            self._logger = job_logger(self.job, self.id, self.worker, self.run_id)
        return self._logger

    def done(self, result=None):
        if self.outcome is None:
            self.outcome = {"ok": True, "result": result}

    def error(self, message):
        if self.outcome is None:
            self.outcome = {"ok": False, "error": {"type": "JobError", "message": str(message),
                                                   "traceback": None}}

    def __repr__(self):
        return f"<task {self.id} job {self.job}>"


def error_of(exc: BaseException) -> dict:
    """{type, message, traceback} for an exception that ended a run."""
    import traceback

    if isinstance(exc, SyntaxError):
        # "invalid syntax (/jobs/x.py, line 3)", and the offending line with its caret:
        # the runner's own frames that compiled the file would only mislead.
        return {"type": "SyntaxError", "message": f"{exc.msg} ({exc.filename}, line {exc.lineno})",
                "traceback": "".join(traceback.format_exception_only(exc))}
    kind = getattr(exc, "type", None)
    if isinstance(kind, str):   # jobs.JobError: the job could not be loaded; no code ran
        return {"type": kind, "message": str(exc), "traceback": None}
    return {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__,
            "traceback": "".join(traceback.format_exception(exc))}


def run_job(code_or_error, module, path, task: JobTask, memory_limit_bytes: int | None,
            on_begin=None) -> dict:
    """Execute the job's module and its run(task); the outcome as a JSON-ready dict.

    The module's own code runs here, at the date: it is the job's code too.
    `on_begin()` is called just before run(task): from then on the run has begun,
    and a run that has begun is never started again after a crash.
    """
    try:
        if isinstance(code_or_error, BaseException):
            raise code_or_error
        exec(code_or_error, module.__dict__)
        entry = getattr(module, "run", None)
        if not callable(entry):
            raise TypeError(f"job file {path} has no run(task) function")
        if on_begin is not None:
            on_begin()
        value = entry(task)
        outcome = task.outcome or {"ok": True, "result": value}
    except MemoryError:
        # Build nothing here: the traceback still holds the frames that ate the
        # memory; it is gone once the except clause ends.
        outcome = None
    except BaseException as exc:   # SystemExit, KeyboardInterrupt too: the run failed
        outcome = task.outcome or {"ok": False, "error": error_of(exc)}
    if outcome is None:
        limit = f" (limit {memory_limit_bytes} bytes)" if memory_limit_bytes else ""
        outcome = task.outcome or {"ok": False, "error": {
            "type": "MemoryError", "message": f"ran out of memory{limit}", "traceback": None}}
    return outcome


# Built once, in the zygote, before it forks: json.dumps with an option builds a new
# encoder on every call, and a child that does so touches, and so copies, more of the
# zygote's pages (with the journal's, below: ~0.1 ms of CPU per run, docs/benchmarks.md).
OUTCOME_JSON = json.JSONEncoder(allow_nan=False)


def encode_outcome(outcome: dict) -> tuple[bytes, dict]:
    """JSON for the pipe, and the outcome it holds: a result JSON cannot hold becomes an
    error saying so (the journal keeps what the pipe carries, without decoding it again)."""
    try:
        return OUTCOME_JSON.encode(outcome).encode() + b"\n", outcome
    except (TypeError, ValueError) as exc:
        replaced = {"ok": False, "error": {
            "type": "ResultError",
            "message": f"the job's result is not JSON-serialisable: {exc}",
            "traceback": None}}
        return json.dumps(replaced).encode() + b"\n", replaced


def prepare_module(module_name: str, path):
    """An empty module object for the job file, registered so relative imports work.

    The name is prefixed so that a job called "json" never stands in for the
    standard library's json inside its own process.
    """
    if path is None:
        return None
    path = os.fspath(path)
    if os.path.basename(path) == "__init__.py":
        # A package: importlib builds what its relative imports need (__path__, __spec__).
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            module_name, path, submodule_search_locations=[os.path.dirname(path)])
        module = importlib.util.module_from_spec(spec)
    else:
        # A single file: a bare module, as `python file.py` makes (__spec__ None). Half a
        # millisecond less per run than importlib's machinery, whose objects each child
        # would otherwise copy from the zygote page by page.
        module = types.ModuleType(module_name)
        module.__file__ = path
    sys.modules[module_name] = module
    return module
