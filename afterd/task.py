"""The task document: parse, validate, statuses (pure: no I/O, never reads the clock).

The same rules run inside CouchDB as `design/validate_doc_update.js`; the shared
table in tests/doc_cases.py keeps the two from drifting apart. Change both together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# The shared field checks live in fields.py; they are re-exported here, where callers
# have always found them.
from afterd.fields import (BLANKS, DATE_GRAMMAR, DATE_HELP, JOB_NAME, MAX_YEAR,  # noqa: F401
                           MIN_YEAR, TaskError, format_date, is_integer, is_number,
                           parse_date, parse_job, parse_worker)
from afterd.policy import DEFAULT_POLICY, Policy, parse_policy
from afterd.repeat import DEFAULT_MIN_REPEAT_S, Repeat, check_floor, parse_repeat

STATUSES = ("waiting", "scheduled", "running", "done", "error",
            "reschedule", "cancel", "canceled",
            "pause", "paused", "resume", "run")
# Written by a user to ask the worker for something; the worker answers with another status.
COMMANDS = frozenset({"reschedule", "cancel", "pause", "resume", "run"})
FINAL = frozenset({"done", "error", "canceled"})
# Older documents (the original after) wrote "err".
STATUS_ALIASES = {"err": "error"}

# Prefix of the workers' own records (heartbeats...): not tasks.
WORKER_RECORD_PREFIX = "after:"


def normalize_status(value) -> str:
    """A known status; "err" from old documents reads as "error"."""
    if isinstance(value, str):
        value = STATUS_ALIASES.get(value, value)
        if value in STATUSES:
            return value
    raise TaskError("status", f"{value!r} is not a status; use one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class Task:
    id: str
    rev: str | None
    worker: str
    date: datetime
    status: str
    job_name: str
    arguments: list | dict
    repeat: Repeat | None
    timeout_s: float | None
    retry: int                  # retries allowed after an interrupted run (policy.retry: the rest)
    doc: dict                   # the raw document, untouched (unknown user fields kept)
    policy: Policy = DEFAULT_POLICY   # retry, catchup, overlap, jitter, history_limit, on_done/on_error


def parse_timeout(doc: dict) -> float | None:
    timeout = doc.get("timeout")
    if timeout is None:
        return None
    if not is_number(timeout) or timeout <= 0:
        raise TaskError("timeout", f"{timeout!r} is not a positive number of seconds")
    return float(timeout)


def check_worker_fields(doc: dict) -> None:
    """The worker's own bookkeeping, checked only where a bad value would break a worker."""
    anchor = doc.get("anchor")
    if anchor is not None:
        parse_date(anchor, "anchor")
    occurrence = doc.get("occurrence")
    if occurrence is not None and (not is_integer(occurrence) or occurrence < 0):
        raise TaskError("occurrence", f"{occurrence!r} is not an index (0 or more)")


def parse_task(doc: dict, min_repeat_s: float | None = None) -> Task:
    """The Task a worker can run, or TaskError naming the first bad field. `min_repeat_s`:
    refuse a repeat whose runs may come closer (the door's floor; a worker runs what got in)."""
    if not isinstance(doc, dict):
        raise TaskError("document", "must be a JSON object")
    worker = parse_worker(doc)
    if "date" not in doc:
        raise TaskError("date", f"missing: {DATE_HELP}")
    date = parse_date(doc["date"])
    if "status" not in doc:
        raise TaskError("status", 'missing: a new task starts as "waiting"')
    status = normalize_status(doc["status"])
    job_name, arguments = parse_job(doc)
    rep = doc.get("repeat")
    repeat = parse_repeat(rep) if rep is not None else None
    if repeat is not None and min_repeat_s:
        check_floor(repeat, min_repeat_s)
    timeout_s = parse_timeout(doc)
    policy = parse_policy(doc)
    check_worker_fields(doc)
    return Task(id=doc.get("_id"), rev=doc.get("_rev"), worker=worker, date=date, status=status,
                job_name=job_name, arguments=arguments, repeat=repeat, timeout_s=timeout_s,
                retry=crash_retries(policy), doc=doc, policy=policy)


def crash_retries(policy: Policy) -> int:
    """How many more runs an occurrence cut by a crash may get: the `retry` number, or the
    retry object's attempts when it names "interrupted"."""
    retry = policy.retry
    return retry.attempts - 1 if "interrupted" in retry.on else 0


def is_worker_record(doc: dict) -> bool:
    return str(doc.get("_id", "")).startswith(WORKER_RECORD_PREFIX)


def check_document(doc: dict, min_repeat_s: float = DEFAULT_MIN_REPEAT_S) -> None:
    """What `validate_doc_update` decides, in Python: None if CouchDB should store `doc`.

    Deletions and design documents pass; "after:" records need a string `type`; every
    other document must be a task, repeating no more often than `min_repeat_s` (the
    setting `after init` writes into the design document). Raises TaskError otherwise.
    """
    if doc.get("_deleted"):
        return
    doc_id = str(doc.get("_id", ""))
    if doc_id.startswith("_design/"):
        return
    if is_worker_record(doc):
        if not isinstance(doc.get("type"), str):
            raise TaskError("type", 'a worker record ("after:" id) needs a string type')
        return
    error = doc.get("error")
    if doc.get("status") == "error" and isinstance(error, dict) and error.get("type") == "InvalidTask":
        return  # a worker's verdict on a document that got in before validation existed
    parse_task(doc, min_repeat_s)
