"""Cron expressions (`repeat.cron`): parse, match, next times, counting, in words (pure).

No clock and no I/O: every function takes the times it works from (arq's `next_cron`,
huey's `crontab`). The semantics are Debian cron's (Vixie cron 3.0), so a crontab line
means here what it meant there:

- five fields, minute hour day-of-month month day-of-week, or six with a leading
  second; lists `1,15`, ranges `1-5`, steps `*/15` and `5-59/20`, names `JAN`-`DEC` and
  `SUN`-`SAT` (any case), `7` as Sunday; the aliases @yearly @annually @monthly @weekly
  @daily @midnight @hourly. `@reboot` is refused: a worker's start is not a schedule.
- A step needs a range or `*`: `5/10` is refused as Debian cron refuses it (cronie and
  croniter read it as `5-59/10`; the message says to write that).
- Day of month and day of week: when both are restricted, a day matching either runs;
  when either field starts with `*` (`*/2` included, as in Vixie), both must match.
- Times are wall-clock times in the task's `tz` (UTC by default). Daylight saving, as
  Vixie cron does it: a job whose minute or hour field starts with `*` ("wild", like
  `*/15 * * * *` or `0 * * * *`) runs at each wall-clock time that exists, twice in an
  hour that is repeated; a fixed-time job (`30 2 * * *`) whose time a jump forward skips
  runs once right after the jump (several skipped times: still once), and in a repeated
  hour runs once, the first time.
- An expression that can never run (`0 0 30 2 *`) is refused.

Occurrences are whole seconds. A chain counts them from its anchor (the task's first
date): occurrence 0 is the first time at or after the anchor that the expression
matches. Counting and indexing work a day at a time over cached per-year tables, so
"the 3,000,000th second since last month" costs a few dozen steps, not a walk.

The API (every time an aware datetime; `tz` an IANA name, a ZoneInfo, or None for UTC):
    parse_cron(text) -> Cron                 CronError (one line) on a bad expression
    at_or_after(cron, t, tz) -> datetime     the first occurrence at or after t (None past 2999)
    next_after(cron, t, tz) -> datetime      the first strictly after t: the run after a run at t
    upcoming(cron, t, n, tz) -> [datetime]   the first n at or after t
    nth(cron, start, k, tz), count_between(cron, start, end, tz)   what a chain's index needs
    min_gap_s(cron) -> int                   the shortest time between two runs (the floor)
    describe(text, tz) -> str                "at 03:00 on Monday to Friday, Lisbon time"

Why not python3-croniter (Debian packages it): a chain needs the k-th occurrence and
the count of those a worker missed without walking them (croniter iterates); croniter
reads a sixth field as seconds at the end, Debian cron has none (six-field crontabs put
seconds first, as here); and its daylight-saving behaviour is not Vixie's fixed/wild rule.
A new runtime dependency for less than this module does was not worth it.
"""

from __future__ import annotations

import bisect
import calendar
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

DAY_S = 86400
MAX_YEAR = 2999            # fields.MAX_YEAR: no occurrence is looked for beyond it

ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# (name in messages, low, high, names and the number of the first)
FIELDS = [("second", 0, 59, None), ("minute", 0, 59, None), ("hour", 0, 23, None),
          ("day of month", 1, 31, None), ("month", 1, 12, (MONTHS, 1)),
          ("day of week", 0, 7, (DAYS, 0))]
NAME_HELP = {"month": " or a month name (JAN-DEC)", "day of week": " or a day name (SUN-SAT)"}
FIELDS_HELP = "give 5 (minute hour day-of-month month day-of-week) or 6 (second first)"
EXAMPLE = '"0 3 * * 1-5"'
# Same in the JS validator (design/validate_doc_update.js): only these count as blanks.
BLANKS = re.compile(r"[ \t]+")
NUMBER = re.compile(r"[0-9]+\Z")
MAX_DIGITS = 6           # "000005" is fine; more digits is a typo (and keeps JS and Python alike)


class CronError(ValueError):
    """A bad expression; str(e) is one line like 'cron "0 25 * * *": hour 25 is not in 0-23'."""


@dataclass(frozen=True)
class Cron:
    text: str                    # as written (an alias stays an alias)
    seconds: tuple[int, ...]     # sorted
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]        # day of month, 1-31
    months: tuple[int, ...]      # 1-12
    weekdays: tuple[int, ...]    # 0-6, Sunday 0 (a 7 is folded into 0)
    day_or: bool                 # both day fields restricted: a day matching either runs
    wild: bool                   # minute or hour starts with "*" (Vixie's MIN_STAR|HR_STAR)
    fields: tuple[str, ...]      # the six fields' text ("0" for an absent second)


def show(value) -> str:
    """A value in a message as JavaScript's JSON.stringify writes it (the validator's show)."""
    return json.dumps(value, ensure_ascii=False)


def parse_cron(text) -> Cron:
    """A Cron, or CronError saying which field is wrong and why."""
    if not isinstance(text, str):
        raise CronError(f"cron must be a string like {EXAMPLE}")
    return parse_text(text)


@lru_cache(maxsize=1024)     # a worker parses a task's document at each decision; errors are not kept
def parse_text(text: str) -> Cron:
    head = f"cron {show(text)}"
    stripped = text.strip(" \t")
    if stripped.startswith("@"):
        alias = stripped.lower()
        if alias == "@reboot":
            raise CronError(f"{head}: a worker's start is not a schedule (it restarts on upgrades "
                            "and failures); give times, or start the job from its own systemd unit")
        if alias not in ALIASES:
            raise CronError(f"{head} is not one of {' '.join(ALIASES)}")
        stripped = ALIASES[alias]
    parts = BLANKS.split(stripped) if stripped else []
    if len(parts) not in (5, 6):
        raise CronError(f"{head} has {len(parts)} field{'' if len(parts) == 1 else 's'}; {FIELDS_HELP}")
    if len(parts) == 5:
        parts = ["0"] + parts
    sets = [parse_field(head, part, *spec) for part, spec in zip(parts, FIELDS)]
    weekdays = tuple(sorted({d % 7 for d in sets[5]}))
    dom_star, dow_star = parts[3].startswith("*"), parts[5].startswith("*")
    cron = Cron(text=text, seconds=tuple(sets[0]), minutes=tuple(sets[1]), hours=tuple(sets[2]),
                days=tuple(sets[3]), months=tuple(sets[4]), weekdays=weekdays,
                day_or=not (dom_star or dow_star), wild=parts[1].startswith("*") or parts[2].startswith("*"),
                fields=tuple(parts))
    if not cron.day_or and not any(d <= month_days(m) for m in cron.months for d in cron.days):
        raise CronError(f"{head} never runs: no month it names has day {parts[3]}")
    return cron


def month_days(month: int) -> int:
    return (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


def parse_field(head: str, text: str, name: str, low: int, high: int, names) -> list[int]:
    values = set()
    for item in text.split(","):
        values.update(parse_item(head, item, name, low, high, names))
    return sorted(values)


def parse_item(head, item, name, low, high, names) -> range:
    def bad(problem):
        raise CronError(f"{head}: {name} {problem}")

    if item == "":
        bad("has an empty item (two commas, or one at an end)")
    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not NUMBER.match(step_text) or len(step_text) > MAX_DIGITS:
            bad(f"step {step_text or '(none)'} in {item} is not a number")
        step = int(step_text)
        if step == 0:
            bad(f"step 0 in {item} must be 1 or more")
    if body == "*":
        return range(low, high + 1, step)
    first, dash, last = body.partition("-")
    start = value(bad, first, low, high, names, name)
    if not dash:
        if slash:
            bad(f"{item}: a step needs a range or * (write {first}-{high}/{step_text})")
        return range(start, start + 1)
    end = value(bad, last, low, high, names, name)
    if end < start:
        bad(f"range {body} goes backwards")
    return range(start, end + 1, step)


def value(bad, token: str, low: int, high: int, names, name: str) -> int:
    if names and token.upper() in names[0]:
        return names[0].index(token.upper()) + names[1]
    if not NUMBER.match(token) or len(token) > MAX_DIGITS:
        bad(f"{token or '(nothing)'} is not a number{NAME_HELP.get(name, '')}")
    number = int(token)
    if not low <= number <= high:
        bad(f"{token} is not in {low}-{high}")
    return number


# ---- matching and counting -------------------------------------------------------------------

def day_matches(cron: Cron, day: date) -> bool:
    if day.month not in cron.months:
        return False
    dom = day.day in cron.days
    dow = (day.weekday() + 1) % 7 in cron.weekdays    # Python: Monday 0; cron: Sunday 0
    return (dom or dow) if cron.day_or else (dom and dow)


def tod_count(cron: Cron) -> int:
    return len(cron.hours) * len(cron.minutes) * len(cron.seconds)


def tod_before(cron: Cron, x: int) -> int:
    """How many of the day's times (seconds since midnight) are before `x` (0..86400)."""
    if x <= 0:
        return 0
    if x >= DAY_S:
        return tod_count(cron)
    h, rest = divmod(x, 3600)
    m, s = divmod(rest, 60)
    per_hour = len(cron.minutes) * len(cron.seconds)
    n = bisect.bisect_left(cron.hours, h) * per_hour
    if h in cron.hours:
        n += bisect.bisect_left(cron.minutes, m) * len(cron.seconds)
        if m in cron.minutes:
            n += bisect.bisect_left(cron.seconds, s)
    return n


def tod_nth(cron: Cron, i: int) -> int:
    """The i-th of the day's times (0-based), in seconds since midnight."""
    ns, nm = len(cron.seconds), len(cron.minutes)
    h, rest = divmod(i, nm * ns)
    m, s = divmod(rest, ns)
    return cron.hours[h] * 3600 + cron.minutes[m] * 60 + cron.seconds[s]


def zone_of(tz) -> ZoneInfo | timezone:
    if tz is None or isinstance(tz, (ZoneInfo, timezone)):
        return tz or timezone.utc
    return ZoneInfo(tz)


@lru_cache(maxsize=4096)
def day_segments(cron: Cron, zone, ordinal: int) -> tuple:
    """A matching local day's occurrences, in time order, as pieces:
    ("wall", lo, hi, offset_s): the day's times in [lo, hi) seconds, each at
        day_epoch + time - offset_s (epoch seconds);
    ("point", epoch_s): one occurrence (fixed times a jump forward skipped run at its end).
    () when the day does not match."""
    day = date.fromordinal(ordinal)
    if not day_matches(cron, day):
        return ()
    if zone is timezone.utc:
        return (("wall", 0, DAY_S, 0),)
    o1 = offset_s(zone, day)
    o2 = offset_s(zone, day + timedelta(days=1))
    if o1 == o2:
        return (("wall", 0, DAY_S, o1),)
    # One transition in the day: find its instant t (epoch s) to the second.
    day_epoch = (ordinal - EPOCH_ORDINAL) * DAY_S
    # Offset o1 at lo, o2 at hi. A second before midnight's instant: a zone that jumps at
    # midnight (America/Havana) has o2 from the first second of the day on.
    lo, hi = day_epoch - o1 - 1, day_epoch + DAY_S - o2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if utc_offset_at(zone, mid) == o1:
            lo = mid
        else:
            hi = mid
    t = hi
    wall_a, wall_b = t + o1 - day_epoch, t + o2 - day_epoch   # the wall time just before / after
    clamp = lambda x: min(max(x, 0), DAY_S)  # noqa: E731
    a, b = clamp(wall_a), clamp(wall_b)
    if o2 > o1:        # jump forward: walls in [a, b) do not exist
        pieces = [("wall", 0, a, o1)]
        # A time the jump skipped runs at its end, unless a time at the end runs anyway.
        # (A jump to the next midnight, like Samoa's over 30 December 2011: the next day's.)
        at_end = (tod_before(cron, b + 1) > tod_before(cron, b) if wall_b < DAY_S else
                  wall_b == DAY_S and tod_before(cron, 1) == 1 and day_matches(cron, day + timedelta(days=1)))
        if not cron.wild and tod_before(cron, b) > tod_before(cron, a) and not at_end:
            pieces.append(("point", t))
        pieces.append(("wall", b, DAY_S, o2))
    else:              # back: walls in [b, a) come twice; the wild run both times, the fixed once
        pieces = [("wall", 0, a, o1)]
        if cron.wild:
            pieces.append(("wall", b, a, o2))
        pieces.append(("wall", a, DAY_S, o2))
    return tuple(p for p in pieces if p[0] == "point" or p[2] > p[1])


EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def offset_s(zone, day: date) -> int:
    """The UTC offset at the local midnight starting `day` (fold 0: before a transition)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).utcoffset().total_seconds())


def utc_offset_at(zone, epoch_s: int) -> int:
    return int(datetime.fromtimestamp(epoch_s, zone).utcoffset().total_seconds())


def piece_count(cron: Cron, piece, day_epoch: int, x: float | None = None, y: float | None = None) -> int:
    """How many of a piece's occurrences fall in [x, y) (epoch seconds; None: unbounded)."""
    if piece[0] == "point":
        return int((x is None or piece[1] >= x) and (y is None or piece[1] < y))
    _, lo, hi, off = piece
    base = day_epoch - off                    # occurrence = base + time of day
    first = lo if x is None else max(lo, ceil_int(x - base))
    last = hi if y is None else min(hi, ceil_int(y - base))
    return max(0, tod_before(cron, last) - tod_before(cron, first)) if last > first else 0


def ceil_int(x: float) -> int:
    n = int(x)
    return n + 1 if n < x else n


def day_count(cron: Cron, zone, ordinal: int) -> int:
    day_epoch = (ordinal - EPOCH_ORDINAL) * DAY_S
    return sum(piece_count(cron, p, day_epoch) for p in day_segments(cron, zone, ordinal))


@lru_cache(maxsize=256)      # a year's table: up to ~13 KB (every second)
def year_table(cron: Cron, zone, year: int) -> tuple[int, ...]:
    """Occurrences before each local day of `year`, counted from its 1 January: one entry per
    day and one for the year's end (so table[-1] is the year's total)."""
    start = date(year, 1, 1).toordinal()
    days = 366 if calendar.isleap(year) else 365
    table, n, full = [0], 0, tod_count(cron)
    for ordinal in range(start, start + days):
        pieces = day_segments(cron, zone, ordinal)
        if len(pieces) == 1 and pieces[0][0] == "wall" and pieces[0][1] == 0 and pieces[0][2] == DAY_S:
            n += full
        elif pieces:
            n += day_count(cron, zone, ordinal)
        table.append(n)
    return tuple(table)


def local_ordinal(zone, epoch_s: float) -> int:
    return datetime.fromtimestamp(epoch_s, zone).date().toordinal() if zone is not timezone.utc \
        else EPOCH_ORDINAL + int(epoch_s // DAY_S)


def days_count(cron: Cron, zone, first: int, stop: int) -> int:
    """Occurrences on the local days [first, stop) (ordinals), through the year tables."""
    n = 0
    while first < stop:
        d = date.fromordinal(first)
        table = year_table(cron, zone, d.year)
        year_start = date(d.year, 1, 1).toordinal()
        end = min(stop, year_start + len(table) - 1)
        n += table[end - year_start] - table[first - year_start]
        first = end
    return n


def count_between(cron: Cron, start: datetime, end: datetime, tz=None) -> int:
    """How many occurrences fall in [start, end) (aware datetimes)."""
    zone = zone_of(tz)
    x, y = start.timestamp(), end.timestamp()
    if y <= x:
        return 0
    d1, d2 = local_ordinal(zone, x), local_ordinal(zone, y)
    # Each occurrence lies on the local day of its wall-clock time: the edge days are
    # counted with the bounds, the days between through the year tables.
    n = partial(cron, zone, d1, x, y)
    if d2 > d1:
        n += days_count(cron, zone, d1 + 1, d2) + partial(cron, zone, d2, x, y)
    return n


def partial(cron, zone, ordinal, x, y) -> int:
    if date.fromordinal(ordinal).year > MAX_YEAR or ordinal < 1:
        return 0
    day_epoch = (ordinal - EPOCH_ORDINAL) * DAY_S
    return sum(piece_count(cron, p, day_epoch, x, y) for p in day_segments(cron, zone, ordinal))


def nth(cron: Cron, start: datetime, k: int, tz=None) -> datetime | None:
    """The k-th occurrence (0-based) at or after `start`; None beyond the year 2999."""
    zone = zone_of(tz)
    x = start.timestamp()
    ordinal = local_ordinal(zone, x)
    found, k = in_day(cron, zone, ordinal, x, k)     # the first day, from x on
    if found is not None:
        return found
    ordinal += 1
    # Whole days from here: skip whole years, then days, through the year tables.
    last = date(MAX_YEAR, 12, 31).toordinal()
    while ordinal <= last:
        d = date.fromordinal(ordinal)
        table = year_table(cron, zone, d.year)
        year_start = date(d.year, 1, 1).toordinal()
        offset = ordinal - year_start
        left = table[-1] - table[offset]
        if k >= left:
            k -= left
            ordinal = year_start + len(table) - 1
            continue
        target = table[offset] + k
        day = bisect.bisect_right(table, target) - 1          # the day holding it
        k = target - table[day]
        found, _ = in_day(cron, zone, year_start + day, x, k)
        return found
    return None


def in_day(cron, zone, ordinal, x, k) -> tuple[datetime | None, int]:
    """(the k-th occurrence on the day at or after x, or None and k less the day's count)."""
    day_epoch = (ordinal - EPOCH_ORDINAL) * DAY_S
    for piece in day_segments(cron, zone, ordinal):
        n = piece_count(cron, piece, day_epoch, x)
        if k >= n:
            k -= n
            continue
        if piece[0] == "point":
            return from_epoch(piece[1]), 0
        _, lo, hi, off = piece
        base = day_epoch - off
        first = max(lo, ceil_int(x - base))
        time = tod_nth(cron, tod_before(cron, first) + k)
        return from_epoch(base + time), 0
    return None, k


def from_epoch(epoch_s: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=epoch_s)


def at_or_after(cron: Cron, t: datetime, tz=None) -> datetime | None:
    """The first occurrence at or after `t`; None beyond the year 2999."""
    return nth(cron, t, 0, tz)


def next_after(cron: Cron, t: datetime, tz=None) -> datetime | None:
    """The first occurrence strictly after `t` (arq's next_cron): the next run after a run at `t`."""
    whole = t.replace(microsecond=0) + timedelta(seconds=1)
    return nth(cron, whole, 0, tz)


def upcoming(cron: Cron, t: datetime, n: int, tz=None) -> list[datetime]:
    """The first `n` occurrences at or after `t`."""
    out = []
    while len(out) < n:
        found = at_or_after(cron, t, tz)
        if found is None:
            break
        out.append(found)
        t = found + timedelta(seconds=1)
    return out


# ---- how often -------------------------------------------------------------------------------

def min_gap_s(cron: Cron) -> int:
    """A lower bound of the time between two occurrences, in seconds, from the finest field
    with more than one value (its values' smallest distance, going round: 0,59 is 1 apart).
    Daylight saving aside: a jump can bring two wall-clock times together."""
    for values, unit, span in ((cron.seconds, 1, 60), (cron.minutes, 60, 60), (cron.hours, 3600, 24)):
        if len(values) > 1:
            gaps = [b - a for a, b in zip(values, values[1:])] + [values[0] + span - values[-1]]
            return min(gaps) * unit
    return DAY_S


# ---- in words --------------------------------------------------------------------------------

DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December"]


def describe(text: str, tz: str | None = None) -> str:
    """The schedule in words: describe("0 3 * * 1-5", "Europe/Lisbon") ->
    "at 03:00 on Monday to Friday, Lisbon time". console-lib.mjs's cronWords says the
    same (tests/cron_words.json holds both to one table). CronError on a bad expression."""
    cron = parse_cron(text)
    sec, minute, hour, dom, month, dow = cron.fields
    words = [time_words(cron, sec, minute, hour)]
    on_dom = None
    if dom != "*":
        words_dom = field_words(dom, "day", ordinal_words)
        on_dom = ("on " if words_dom.startswith("every") else "on the ") + words_dom
    on_dow = None if dow == "*" else "on " + field_words(dow, "day of week", lambda n: DAY_NAMES[n % 7])
    if on_dom and on_dow:
        words.append(f"{on_dom} or {on_dow}" if cron.day_or else f"{on_dom} if it is {on_dow[3:]}")
    elif on_dom or on_dow:
        words.append(on_dom or on_dow)
    if month != "*":
        words.append("in " + field_words(month, "month", lambda n: MONTH_NAMES[n - 1]))
    return " ".join(words) + ", " + zone_words(tz)


def zone_words(tz: str | None) -> str:
    """"Europe/Lisbon" -> "Lisbon time", "America/New_York" -> "New York time"; no zone: UTC."""
    if not tz or tz in ("UTC", "Etc/UTC"):
        return "UTC"
    if tz.startswith("Etc/"):
        return tz + " time"     # "Etc/GMT+5" is 5 hours behind UTC: its last part would mislead
    return tz.split("/")[-1].replace("_", " ") + " time"


def ordinal_words(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def token_number(token: str, unit: str) -> int:
    names = MONTHS if unit == "month" else DAYS if unit == "day of week" else ()
    upper = token.upper()
    if upper in names:
        return names.index(upper) + (1 if unit == "month" else 0)
    return int(token)


def field_words(text: str, unit: str, name=str) -> str:
    """A field's items in words: "1-5" -> "Monday to Friday", "*/2" -> "every 2nd month",
    "5-59/20" -> "5, 25 and 45" (a stepped range of at most 6 values is listed)."""
    items = []
    for item in text.split(","):
        body, slash, step = item.partition("/")
        n = int(step or 1)
        if body == "*":
            items.append(f"every {unit}" if n == 1 else f"every {ordinal_words(n)} {unit}")
            continue
        a, dash, b = body.partition("-")
        if not dash:
            items.append(name(token_number(a, unit)))
            continue
        first, last = token_number(a, unit), token_number(b, unit)
        values = list(range(first, last + 1, n))
        if n > 1 and len(values) <= 6:
            items.extend(name(v) for v in values)
        elif n > 1:
            items.append(f"every {ordinal_words(n)} {unit} from {name(first)} to {name(last)}")
        else:
            items.append(f"{name(first)} to {name(last)}")
    return join_words(items)


def clock(h: int, m: int, s: int = 0) -> str:
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


def every(field: str, unit: str) -> str | None:
    """"*" -> "every minute", "*/15" -> "every 15 minutes"; None for anything else."""
    if field == "*":
        return f"every {unit}"
    if field.startswith("*/") and "," not in field:
        n = int(field[2:])
        return f"every {unit}" if n == 1 else f"every {n} {unit}s"
    return None


def time_words(cron: Cron, sec: str, minute: str, hour: str) -> str:
    """"at 03:00", "every 15 minutes", "at minute 30 of every 2nd hour", ..."""
    if len(cron.seconds) == 1 and len(cron.minutes) == 1 and len(cron.hours) <= 4:
        return "at " + join_words([clock(h, cron.minutes[0], cron.seconds[0]) for h in cron.hours])
    parts = []
    if len(cron.seconds) > 1:
        parts.append(every(sec, "second") or "at seconds " + field_words(sec, "second"))
        if minute != "*":
            parts.append(("of minute " if len(cron.minutes) == 1 else "of minutes ")
                         + field_words(minute, "minute"))
    else:
        parts.append(every(minute, "minute") or ("at minute " if len(cron.minutes) == 1 else "at minutes ")
                     + field_words(minute, "minute"))
        if cron.seconds[0]:
            parts.append(f"at second {cron.seconds[0]}")
    if hour == "*":
        if not parts[0].startswith("every"):
            parts.append("of every hour")
    elif hour.startswith("*/") and "," not in hour:
        n = int(hour[2:])
        parts.append("of every hour" if n == 1 else f"of every {ordinal_words(n)} hour")
    else:
        words = field_words(hour, "hour", lambda n: f"{n:02d}")
        parts.append("during " + ("" if words.startswith("every") else
                                  "hour " if len(cron.hours) == 1 else "hours ") + words)
    return " ".join(parts)
