"""A task's run history (design §3): compact entries, bounded (pure: times are passed in).

`history` is the last `history_limit` runs, oldest first. Every write of a task carries
it through validate_doc_update and the change feed, so an entry is small: summaries are
cut to SUMMARY_CHARS, and a run's output is a short tail or a pointer to where the whole
output is kept (an attachment of the task, which neither validation nor the feed carry).
"""

from __future__ import annotations

import json
from datetime import datetime

from afterd.fields import format_date

SUMMARY_CHARS = 200        # a result or error message longer than this is cut
OUTPUT_TAIL_BYTES = 4096   # the default tail of a run's output kept in its entry
CUT = "…"


def summary(value, limit: int = SUMMARY_CHARS):
    """A result or message small enough for a history entry: short JSON values as they
    are, anything longer as the start of its JSON text followed by "…"."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit - 1] + CUT
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return value if len(text) <= limit else text[:limit - 1] + CUT


def tail(text: str, limit_bytes: int = OUTPUT_TAIL_BYTES) -> str:
    """The last `limit_bytes` bytes of `text` (UTF-8), cut on a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit_bytes:
        return text
    return CUT + data[-limit_bytes:].decode("utf-8", "ignore")


def error_summary(error) -> str | None:
    """{"type", "message", "traceback"} -> "Type: message" (the traceback stays out)."""
    if error is None:
        return None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        text = f"{kind}: {message}" if kind and message else str(message or kind or "")
    else:
        text = str(error)
    return summary(text)


def history_entry(*, occurrence: datetime | None, attempt: int, started_at: datetime | None,
                  finished_at: datetime, status: str, result=None, error=None,
                  process: str | None = None, output: str | None = None,
                  output_ref: str | None = None, output_tail_bytes: int = OUTPUT_TAIL_BYTES,
                  run_now: bool = False) -> dict:
    """One run, compact. Keys: occurrence (the date it was due; for a run now, when it was
    asked for), run_now (true for a run now, an extra run outside the chain), attempt (1 =
    first run of that occurrence), start, end, duration_s, status ("done", "error",
    "timeout", "interrupted", "canceled"), result or error (summaries), process (who ran
    it), and output (the tail of stdout+stderr) or output_ref (where the whole output is).
    Keys without a value are left out."""
    entry = {
        "occurrence": format_date(occurrence) if occurrence else None,
        "run_now": True if run_now else None,
        "attempt": attempt,
        "start": format_date(started_at) if started_at else None,
        "end": format_date(finished_at),
        "duration_s": round((finished_at - started_at).total_seconds(), 3) if started_at else None,
        "status": status,
        "result": summary(result) if status == "done" else None,
        "error": error_summary(error) if status != "done" else None,
        "process": process,
        "output": tail(output, output_tail_bytes) if output and output_tail_bytes > 0 else None,
        "output_ref": output_ref,
    }
    return {key: value for key, value in entry.items() if value is not None}


def push_history(history, entry: dict, limit: int) -> list:
    """A new list: `history` (oldest first) with `entry` appended, the oldest dropped beyond
    `limit`. A `history` that is not a list (a user's edit) starts afresh."""
    previous = history if isinstance(history, list) else []
    if limit <= 0:
        return []
    return (previous + [entry])[-limit:]
