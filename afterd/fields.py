"""What every part of the model reads: the error type, JSON numbers, and dates (pure).

Its own module so that task.py (the document) and repeat.py (the schedule math), which
both need these, import it instead of each other.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

JOB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Only these count as blanks around a worker name (JS trim() and str.strip() disagree on others).
BLANKS = " \t\r\n"

# The years a date may name. A scheduler has no business before the Unix epoch, and
# a date past 2999 is a typo, not a plan; the bound also keeps repeat arithmetic far
# from datetime's year-9999 overflow.
MIN_YEAR, MAX_YEAR = 1970, 2999

# The one accepted date grammar (the JS validator uses the same pattern):
#   YYYY-MM-DD                                   midnight UTC
#   YYYY-MM-DDTHH:MM[:SS[.f{1,6}]][Z|+HH:MM|-HH:MM]   no offset = UTC
DATE_GRAMMAR = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?\Z")
DATE_HELP = 'use ISO 8601 like "2026-12-01", "2026-12-01T03:00:00Z" or "2026-12-01T04:00:00.250+01:00"'


class TaskError(ValueError):
    """A document a worker cannot use. str(e) is one line: "<field>: <what is wrong>"."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def is_number(value) -> bool:
    """A finite JSON number; booleans are not numbers here, although Python says so."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:           # an integer too long for a double: JavaScript reads Infinity
        return False


def is_integer(value) -> bool:
    """A JSON integer. 2.0 counts: JavaScript cannot tell it from 2, and the validator must agree."""
    return is_number(value) and float(value).is_integer()


def parse_date(value, field: str = "date") -> datetime:
    """An aware UTC datetime from the one accepted ISO 8601 grammar (see DATE_GRAMMAR)."""
    if not isinstance(value, str):
        raise TaskError(field, f"must be a string, {DATE_HELP}")
    m = DATE_GRAMMAR.match(value)
    if not m:
        raise TaskError(field, f"{value!r} is not a date: {DATE_HELP}")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    if not MIN_YEAR <= int(year) <= MAX_YEAR:
        raise TaskError(field, f"{value!r}: the year must be between {MIN_YEAR} and {MAX_YEAR}")
    tz = timezone.utc
    if offset and offset != "Z":
        off_h, off_m = int(offset[1:3]), int(offset[4:6])
        if off_h > 23 or off_m > 59:
            raise TaskError(field, f"{value!r}: the offset {offset} is not a valid UTC offset")
        sign = -1 if offset[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
    try:
        dt = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                      int(second or 0), int((fraction or "0").ljust(6, "0")), tzinfo=tz)
    except ValueError:
        raise TaskError(field, f"{value!r} is not a real date or time of day") from None
    return dt.astimezone(timezone.utc)


def format_date(dt: datetime) -> str:
    """ISO 8601 in UTC with "Z"; milliseconds only when non-zero (sub-ms is dropped)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    # Not strftime: this runs several times per run, and strftime is the slow part.
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    ms = dt.microsecond // 1000
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def parse_worker(doc: dict) -> str:
    worker = doc.get("worker")
    if worker is None:
        raise TaskError("worker", "missing: name the worker that should run this task")
    if not isinstance(worker, str) or not worker.strip(BLANKS):
        raise TaskError("worker", "must be a non-empty string naming a worker")
    if worker != worker.strip(BLANKS):
        raise TaskError("worker", f"{worker!r} has leading or trailing spaces")
    return worker


def parse_job(doc: dict) -> tuple[str, list | dict]:
    job = doc.get("job")
    if job is None:
        raise TaskError("job", 'missing: give {"name": "<job module>", "arguments": [...]}')
    if not isinstance(job, dict):
        raise TaskError("job", 'must be an object like {"name": "<job module>", "arguments": [...]}')
    name = job.get("name")
    if not isinstance(name, str) or not JOB_NAME.match(name):
        raise TaskError("job.name", f"{name!r} is not a job name: letters, digits and _ only, "
                                    "not starting with a digit")
    arguments = job.get("arguments", [])
    if not isinstance(arguments, (list, dict)):
        raise TaskError("job.arguments", "must be a JSON list or object")
    return name, arguments
