"""Follow-up tasks (design §3, `on_done` / `on_error`): templates and the task each run
creates (pure: `now` is passed in).

A template is a task without a status: {"job": {"name", "arguments"}, "worker"?, "date"?,
"timeout"?}. When a run ends that way, the worker writes follow_up_doc(...) as a new task.
Its id comes from the parent's run, so a worker that crashes after the run, or replays
it, writes the same id again and CouchDB answers 409: the follow-up exists once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from afterd.fields import (TaskError, format_date, is_number, parse_date, parse_job,
                           parse_worker)
from afterd.history import error_summary, summary

TEMPLATE_KEYS = ("job", "worker", "date", "timeout")
ENDINGS = ("done", "error")
ID_PREFIX_CHARS = 80       # of the parent's id, kept readable in the follow-up's id


@dataclass(frozen=True)
class Template:
    job_name: str
    arguments: list | dict
    worker: str | None          # None: the parent's worker
    date: datetime | None       # None: due at once
    timeout_s: float | None


def parse_template(value, field: str) -> Template:
    """A Template from the task's `on_done` / `on_error`; TaskError naming `field`."""
    if not isinstance(value, dict):
        raise TaskError(field, 'must be a task template like {"job": {"name": "notify_url", '
                               '"arguments": {"url": "..."}}}')
    unknown = sorted(k for k in value if k not in TEMPLATE_KEYS)
    if unknown:
        raise TaskError(field, f"unknown key {unknown[0]!r}; a template has {', '.join(TEMPLATE_KEYS)}")
    try:
        job_name, arguments = parse_job(value)
        worker = parse_worker(value) if value.get("worker") is not None else None
        date = parse_date(value["date"]) if value.get("date") is not None else None
    except TaskError as e:
        raise TaskError(f"{field}.{e.field}", e.problem) from None
    timeout = value.get("timeout")
    if timeout is not None and (not is_number(timeout) or timeout <= 0):
        raise TaskError(f"{field}.timeout", f"{timeout!r} is not a positive number of seconds")
    return Template(job_name, arguments, worker, date, float(timeout) if timeout is not None else None)


def follow_up_id(parent_id: str, run_id: str, ending: str) -> str:
    """Deterministic: the same parent run and ending give the same id, on every process."""
    digest = hashlib.sha256(f"{parent_id}\0{run_id}\0{ending}".encode()).hexdigest()[:24]
    return f"{parent_id[:ID_PREFIX_CHARS]}~on_{ending}~{digest}"


def follow_up_doc(parent_doc: dict, template: Template, run_id: str, ending: str,
                  now: datetime) -> dict:
    """The task to create when run `run_id` of `parent_doc` ended `ending` ("done" or
    "error"). `parent_doc` is the parent after the run (its `result` / `error` are that
    run's): the follow-up's `parent` field carries its id, run, ending and a summary, so a
    notification job can say what happened (task.doc["parent"])."""
    if ending not in ENDINGS:
        raise ValueError(f"ending {ending!r} is not one of {', '.join(ENDINGS)}")
    parent_id = str(parent_doc["_id"])
    parent = {"id": parent_id, "run": run_id, "status": ending}
    if ending == "error":
        parent["error"] = error_summary(parent_doc.get("error"))
    else:
        parent["result"] = summary(parent_doc.get("result"))
    doc = {"_id": follow_up_id(parent_id, run_id, ending),
           "worker": template.worker or parent_doc["worker"],
           "date": format_date(template.date or now),
           "status": "waiting",
           "job": {"name": template.job_name, "arguments": template.arguments},
           "parent": parent}
    if template.timeout_s is not None:
        doc["timeout"] = template.timeout_s
    return doc
