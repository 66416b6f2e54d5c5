"""Repeat offsets, rrule, cron, tz, until/count, next occurrence, durations (pure: `now` is an argument).

Occurrence k of a chain is computed from its anchor (the first date), never chained
from the previous run: 31 Jan + 1 month, + 2 months = 28 Feb, 31 Mar.

With `tz`, arithmetic happens on the wall clock of that zone, so "every day at 03:00
Europe/Lisbon" stays 03:00 across daylight saving. A wall-clock time that does not exist
(spring forward) moves forward by the gap; an ambiguous one (fall back) takes the first.
Both follow from PEP 495's fold=0, which is what `localize` relies on.

With `rrule`, occurrence 0 is the anchor itself (the task's own date runs first) and
occurrences 1, 2, ... are the rule's instances strictly after it; DTSTART is the anchor
(in `tz` when given). Rule instances are counted by iterating, so a chain of millions of
rrule instances is slow; offset chains are not (plan() searches, it never walks).

With `cron` (cron.py), occurrence 0 is the first time at or after the anchor that the
expression matches (the task's own date need not match), and occurrence k the k-th after
it; cron.py counts them a day at a time, so a cron chain is cheap to search too.

How often a repeat may run is bounded at the door (check_floor: `min_repeat_s`, a setting
`after init` writes into the design document): each run writes the task twice.

Durations ("30s", "1h30m", "1M7d", or a number of seconds) are read here too: the
CLI's --every and --in, and the policy fields (retry delays, catch-up window, jitter);
repeat_text prints a repeat back in that syntax.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import rrulestr

from afterd import cron as crons
from afterd.fields import TaskError, is_integer, is_number, parse_date

UNITS = {  # key (long or short; case matters: M months, m minutes) -> unit
    "years": "years", "y": "years", "months": "months", "M": "months",
    "weeks": "weeks", "w": "weeks", "days": "days", "d": "days",
    "hours": "hours", "h": "hours", "minutes": "minutes", "m": "minutes",
    "seconds": "seconds", "s": "seconds", "milliseconds": "milliseconds", "ms": "milliseconds",
}
OTHER_KEYS = ("until", "count", "tz", "rrule", "cron")
# Bounds that keep every occurrence computable; a longer period is a mistake, not a plan.
MAX_MONTHS = 12000                                  # 1000 years
MAX_SUBMONTH_MS = 1000 * 366 * 86400 * 1000         # about 1000 years
AVG_MONTH_S = 365.2425 / 12 * 86400                 # Gregorian average, to estimate k

# Shapes the JS validator checks too (it cannot load time zones or parse rules).
TZ_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*\Z")
RRULE_PART = (r"(FREQ|INTERVAL|COUNT|UNTIL|BYSECOND|BYMINUTE|BYHOUR|BYDAY|BYMONTHDAY|"
              r"BYYEARDAY|BYWEEKNO|BYMONTH|BYSETPOS|WKST)=[A-Za-z0-9,+\-]+")
RRULE_SHAPE = re.compile(rf"(RRULE:)?{RRULE_PART}(;{RRULE_PART})*\Z")
RRULE_HELP = 'an RFC 5545 rule on one line, like "FREQ=DAILY;BYHOUR=3"'


@dataclass(frozen=True)
class Repeat:
    offset: relativedelta | None   # from the offset keys; None when rrule is used
    rrule: str | None              # RFC 5545 text, e.g. "FREQ=DAILY;BYHOUR=3"
    tz: str | None                 # IANA name; offsets/rrule are wall-clock in it
    until: datetime | None
    count: int | None              # total occurrences in the chain (collapsed ones count)
    cron: crons.Cron | None = None  # a cron expression (cron.py); then offset and rrule are None


def refuse(problem: str):
    raise TaskError("repeat", problem)


def offset_ms(units: dict) -> float:
    """The sub-month part in milliseconds, summed in the same order as the JS validator."""
    g = units.get
    return ((((g("weeks", 0) * 7 + g("days", 0)) * 24 + g("hours", 0)) * 60
             + g("minutes", 0)) * 60 + g("seconds", 0)) * 1000 + g("milliseconds", 0)


def parse_offset(value: dict) -> relativedelta | None:
    units: dict[str, float] = {}
    for key, amount in value.items():
        if key not in UNITS:
            continue
        unit = UNITS[key]
        if unit in units:
            refuse(f"{unit} is given twice (long and short key)")
        if not is_number(amount):
            refuse(f"{key} must be a number, not {amount!r}")
        if unit in ("years", "months") and not is_integer(amount):
            refuse(f"{key} must be a whole number, not {amount!r}")
        if amount < 0:
            refuse(f"{key} is negative: a repeat must move time forward")
        units[unit] = amount
    if not units:
        return None
    months = int(units.get("years", 0)) * 12 + int(units.get("months", 0))
    submonth_ms = offset_ms(units)
    if months == 0 and submonth_ms < 1:
        refuse("the offset is zero (it must be at least 1 millisecond): a repeat must move time forward")
    if months > MAX_MONTHS or submonth_ms > MAX_SUBMONTH_MS:
        refuse("the offset is too large (at most 1000 years)")
    return relativedelta(months=months, microseconds=round(submonth_ms * 1000))


def parse_rrule(text, zone) -> str:
    if not isinstance(text, str) or not RRULE_SHAPE.match(text):
        refuse(f"rrule {text!r} is not {RRULE_HELP}")
    if not re.search(r"(^|[:;])FREQ=", text):
        refuse(f"rrule {text!r} has no FREQ")
    try:
        rrulestr(text, dtstart=datetime(2000, 1, 1, tzinfo=zone or timezone.utc))
    except (ValueError, TypeError, KeyError) as e:
        refuse(f"rrule {text!r}: {e}")
    return text


def parse_tz(name) -> ZoneInfo:
    if not isinstance(name, str) or not TZ_SHAPE.match(name):
        refuse(f"tz {name!r} is not an IANA time zone name like \"Europe/Lisbon\"")
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):   # ZoneInfoNotFoundError is a KeyError
        refuse(f"tz {name!r} is not a known IANA time zone")


def parse_cron(text) -> crons.Cron:
    try:
        return crons.parse_cron(text)
    except crons.CronError as e:
        refuse(str(e))


def parse_repeat(value: dict) -> Repeat:
    """A Repeat, or TaskError("repeat: ...") saying what to fix."""
    if not isinstance(value, dict):
        refuse('must be an object like {"days": 1}, {"rrule": "FREQ=DAILY"} or {"cron": "0 3 * * *"}')
    unknown = sorted(k for k in value if k not in UNITS and k not in OTHER_KEYS)
    if unknown:
        refuse(f"unknown key {unknown[0]!r}; use years/y, months/M, weeks/w, days/d, hours/h, "
               "minutes/m, seconds/s, milliseconds/ms, until, count, tz, rrule or cron")
    offset = parse_offset(value)
    zone = parse_tz(value["tz"]) if value.get("tz") is not None else None
    rule = schedule = None
    if value.get("cron") is not None:
        if offset is not None:
            refuse("give either offset keys or a cron expression, not both")
        if value.get("rrule") is not None:
            refuse("give either an rrule or a cron expression, not both")
        schedule = parse_cron(value["cron"])
    elif value.get("rrule") is not None:
        if offset is not None:
            refuse("give either offset keys or an rrule, not both")
        rule = parse_rrule(value["rrule"], zone)
    elif offset is None:
        refuse('give an offset like {"days": 1}, an rrule or a cron expression')
    until = None
    if value.get("until") is not None:
        try:
            until = parse_date(value["until"], "until")
        except TaskError as e:
            refuse(str(e))
    count = value.get("count")
    if count is not None:
        if not is_integer(count) or count < 1:
            refuse(f"count must be a whole number of runs, 1 or more, not {count!r}")
        count = int(count)
    return Repeat(offset=offset, rrule=rule, tz=value.get("tz") if zone else None,
                  until=until, count=count, cron=schedule)


# ---- how often a repeat may run (the floor) --------------------------------------------------

DEFAULT_MIN_REPEAT_S = 1.0    # the `min_repeat_s` setting's default
FREQ_S = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600, "DAILY": 86400, "WEEKLY": 7 * 86400,
          "MONTHLY": 28 * 86400, "YEARLY": 365 * 86400}
# The rule parts that pick times within a day, finest first: (part, its unit in s, values in a cycle).
RRULE_TIME_PARTS = (("SECOND", "BYSECOND", 1, 60), ("MINUTE", "BYMINUTE", 60, 60), ("HOUR", "BYHOUR", 3600, 24))
RRULE_DAY_PARTS = ("BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH")


def cycle_gap(values: list[int], span: int) -> int:
    """The smallest distance between sorted distinct values, going round (0 and 59 of 60: 1)."""
    return min([b - a for a, b in zip(values, values[1:])] + [values[0] + span - values[-1]])


def rrule_gap_s(text: str) -> float:
    """A lower bound of the time between two instances of an rrule: the finest unit it
    varies in (a BY list of several values: their smallest distance; FREQ: INTERVAL of it).
    The JS validator computes the same from the same text."""
    parts = dict(p.split("=", 1) for p in text.split(":", 1)[-1].split(";"))
    freq, interval = parts.get("FREQ"), int(parts.get("INTERVAL") or 1)
    for unit, by, unit_s, span in RRULE_TIME_PARTS:
        if by in parts:
            values = sorted({int(v) for v in parts[by].split(",")})
            if len(values) > 1:
                return cycle_gap(values, span) * unit_s
        elif freq == unit + "LY":
            return interval * unit_s
    if any(len(parts[by].split(",")) > 1 for by in RRULE_DAY_PARTS if by in parts):
        return 86400
    return interval * FREQ_S.get(freq, 86400)


def repeat_gap_s(rep: Repeat) -> float:
    """A lower bound of the time between two runs of a chain, in seconds, by its nominal
    period (daylight saving aside: a wall-clock repeat can lose an hour once a year)."""
    if rep.cron:
        return crons.min_gap_s(rep.cron)
    if rep.rrule:
        return rrule_gap_s(rep.rrule)
    months, rest = offset_parts(rep.offset)
    return months * 28 * 86400 + rest.total_seconds()


def number_text(x: float) -> str:
    """1.0 -> "1", 0.5 -> "0.5": as JavaScript's String() writes them (the validator's message)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def check_floor(rep: Repeat, min_repeat_s: float) -> None:
    """TaskError("repeat: ...") when the chain's runs may come closer than `min_repeat_s`."""
    if min_repeat_s and repeat_gap_s(rep) < min_repeat_s:
        refuse(f"runs would come less than {number_text(min_repeat_s)} s apart, this database's "
               "min_repeat_s: each run writes the task twice")


def localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone` as UTC. fold=0: a time in a spring-forward gap uses the
    offset before the gap, which lands it later by the gap; an ambiguous time is the first."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


def offset_parts(offset: relativedelta) -> tuple[int, timedelta]:
    months = offset.years * 12 + offset.months
    rest = timedelta(days=offset.days, hours=offset.hours, minutes=offset.minutes,
                     seconds=offset.seconds, microseconds=offset.microseconds)
    return months, rest


def offset_raw(anchor: datetime, rep: Repeat, k: int) -> datetime | None:
    """anchor + k * offset, ignoring until/count; None past what datetime can hold."""
    months, rest = offset_parts(rep.offset)
    zone = ZoneInfo(rep.tz) if rep.tz else None
    base = anchor.astimezone(zone).replace(tzinfo=None) if zone else anchor
    try:
        moved = base + relativedelta(months=k * months) + k * rest
    except (OverflowError, ValueError):
        return None
    return localize(moved, zone) if zone else moved


def rrule_after_anchor(anchor: datetime, rep: Repeat):
    """The rule's instances strictly after the anchor, in UTC (occurrences 1, 2, ...)."""
    zone = ZoneInfo(rep.tz) if rep.tz else timezone.utc
    rule = rrulestr(rep.rrule, dtstart=anchor.astimezone(zone))
    for instance in rule:
        instance = instance.astimezone(timezone.utc)
        if instance > anchor:
            yield instance


def ended(rep: Repeat, k: int, date: datetime | None) -> bool:
    return (date is None or (rep.count is not None and k >= rep.count)
            or (rep.until is not None and date > rep.until))


def occurrence(anchor: datetime, rep: Repeat, k: int) -> datetime | None:
    """The k-th date of the chain (k=0 is the anchor); None past until/count."""
    if k < 0:
        raise ValueError("occurrence index must be 0 or more")
    if rep.count is not None and k >= rep.count:
        return None
    if rep.cron:
        date = crons.nth(rep.cron, anchor, k, rep.tz)
    elif k == 0:
        date = anchor
    elif rep.rrule:
        date = next(itertools.islice(rrule_after_anchor(anchor, rep), k - 1, None), None)
    else:
        date = offset_raw(anchor, rep, k)
    return None if ended(rep, k, date) else date


def plan(anchor: datetime, rep: Repeat, planned_k: int, now: datetime) -> tuple[int | None, datetime | None]:
    """The first occurrence strictly after `now` past `planned_k` (the occurrence now due):
    (k_next, date_next). Missed occurrences in between collapse into the run happening now.
    (None, None) when until/count ended the chain."""
    if rep.rrule:
        k, date = rrule_first_after(anchor, rep, planned_k, now)
    elif rep.cron:
        k = cron_first_after(anchor, rep, planned_k, now)
        date = crons.nth(rep.cron, anchor, k, rep.tz)
    else:
        k = offset_first_after(anchor, rep, planned_k, now)
        date = offset_raw(anchor, rep, k)
    if k is None or ended(rep, k, date):
        return None, None
    return k, date


def rrule_first_after(anchor, rep, planned_k, now):
    for k, date in enumerate(rrule_after_anchor(anchor, rep), start=1):
        if rep.count is not None and k >= rep.count:
            break
        if k > planned_k and date > now:
            return k, date
    return None, None


def cron_first_after(anchor: datetime, rep: Repeat, planned_k: int, now: datetime) -> int:
    """The smallest k > planned_k with occurrence k > now: the occurrences up to now, counted."""
    up_to_now = now.replace(microsecond=0) + timedelta(seconds=1)    # occurrences are whole seconds
    return max(planned_k + 1, crons.count_between(rep.cron, anchor, up_to_now, rep.tz))


def offset_first_after(anchor: datetime, rep: Repeat, planned_k: int, now: datetime) -> int:
    """The smallest k > planned_k with occurrence k > now.

    Occurrences never decrease with k, so: estimate k from the offset's average length,
    gallop to bracket the answer, then bisect. A few dozen date computations even for
    "every second since 2012", never a walk over the missed ones.
    """
    def after_now(k: int) -> bool:
        date = offset_raw(anchor, rep, k)
        return date is None or date > now     # None: beyond datetime's range, so after now

    months, rest = offset_parts(rep.offset)
    approx_s = months * AVG_MONTH_S + rest.total_seconds()
    elapsed_s = (now - anchor).total_seconds()
    guess = max(planned_k + 1, int(elapsed_s // approx_s) + 1)
    lo, hi = planned_k, None                # lo: known not after now (or planned_k itself)
    step = 1
    if after_now(guess):
        hi = guess
        while hi - step > lo:
            if not after_now(hi - step):
                lo = hi - step
                break
            hi -= step
            step *= 2
    else:
        lo = guess
        while after_now(lo + step) is False:
            lo += step
            step *= 2
        hi = lo + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if after_now(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ---- durations -------------------------------------------------------------------------------

# Longest first so "ms" is not read as minutes then "s".
DURATION_UNITS = {"ms": "milliseconds", "y": "years", "M": "months", "w": "weeks", "d": "days",
                  "h": "hours", "m": "minutes", "s": "seconds"}
# [0-9], not \d: Python's \d takes any script's digits, JavaScript's only ASCII, and the
# validator must agree with this module.
DURATION_TOKEN = re.compile(r"([0-9]+)(ms|y|M|w|d|h|m|s)")
DURATION_HELP = "digits followed by y M w d h m s ms (M months, m minutes), e.g. 1M7d, 1h30m, 90s"
MAX_DURATION_DIGITS = 15          # more is a typo, and past what a double holds exactly


def duration_units(text, field: str = "duration") -> dict[str, int]:
    """'1M7d' -> {'months': 1, 'days': 7}; zero amounts allowed. TaskError naming `field`."""
    if not isinstance(text, str):
        raise TaskError(field, f"{text!r} is not a duration: {DURATION_HELP}")
    units = {}
    position = 0
    for m in DURATION_TOKEN.finditer(text):
        if m.start() != position:
            break
        key = DURATION_UNITS[m.group(2)]
        if key in units:
            raise TaskError(field, f"{text!r}: {m.group(2)} given twice")
        if len(m.group(1)) > MAX_DURATION_DIGITS:
            raise TaskError(field, f"{text!r} is too large")
        units[key] = int(m.group(1))
        position = m.end()
    if not text or position != len(text):
        raise TaskError(field, f"{text!r} is not a duration: {DURATION_HELP}")
    return units


def parse_duration(text, field: str = "duration") -> dict[str, int]:
    """A duration that must move time forward, as the long keys of a task's `repeat`
    (`after add --every 1M7d` -> {"months": 1, "days": 7}, design §3)."""
    units = duration_units(text, field)
    if not any(units.values()):
        raise TaskError(field, f"{text!r} is zero: a duration must move time forward")
    return units


def duration_s(value, field: str) -> float:
    """A policy duration in seconds: a number (0 or more) or a string like "1h30m".

    Months and years are refused: a retry delay or a jitter bound needs a fixed number
    of seconds, and a month has none. Bounded like a repeat offset (about 1000 years).
    """
    if is_number(value):
        if value < 0:
            raise TaskError(field, f"{value!r} is negative: give seconds (0 or more) or a duration like \"30s\"")
        if value * 1000 > MAX_SUBMONTH_MS:
            raise TaskError(field, f"{value!r} is too large (at most 1000 years)")
        return float(value)
    if not isinstance(value, str):
        raise TaskError(field, f"{value!r} is not a duration: give seconds or {DURATION_HELP}")
    units = duration_units(value, field)
    if units.get("years") or units.get("months"):
        raise TaskError(field, f"{value!r}: months and years have no fixed length here; use days (30d)")
    ms = offset_ms(units)
    if ms > MAX_SUBMONTH_MS:
        raise TaskError(field, f"{value!r} is too large (at most 1000 years)")
    return ms / 1000


def duration_delta(units: dict[str, int]) -> relativedelta:
    """{'months': 1, 'days': 7} (parse_duration's answer) -> the relativedelta to add to a date."""
    fields = dict(units)
    ms = fields.pop("milliseconds", 0)
    return relativedelta(**fields, microseconds=ms * 1000)


def duration_value(text: str, field: str):
    """A policy duration typed as text, as the document keeps it: a number of seconds when
    typed as one ("90", "0.5"), else the text as typed ("1h30m"). TaskError naming `field`."""
    try:
        number = float(text)
    except ValueError:
        number = None
    value = (int(number) if number.is_integer() else number) if number is not None else text
    duration_s(value, field)
    return value


REPEAT_SHORT = {long: short for short, long in DURATION_UNITS.items()}


def repeat_text(repeat) -> str:
    """A task's `repeat` in the syntax `after add --every` takes: {'months': 1, 'days': 7}
    -> '1M7d'; an rrule as written, a tz in parentheses; '-' for none."""
    if not isinstance(repeat, dict):
        return "-"
    parts = ["".join(f"{value}{REPEAT_SHORT.get(key, key)}" for key, value in repeat.items()
                     if key not in ("tz", "rrule", "until", "count", "cron"))]
    if "rrule" in repeat:
        parts.append(str(repeat["rrule"]))
    if "cron" in repeat:
        parts.append(str(repeat["cron"]))
    if "tz" in repeat:
        parts.append(f"({repeat['tz']})")
    return " ".join(p for p in parts if p) or "-"
