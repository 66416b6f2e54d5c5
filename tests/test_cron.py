"""Cron math (afterd/cron.py): parse, next times across daylight saving, counting (pure,
table-driven; `now` and the start are arguments). Where cron implementations differ, a row
says which way after goes (README, "repeat.cron")."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afterd.cron import (CronError, at_or_after, count_between, min_gap_s, next_after, nth,
                         parse_cron, upcoming)
from afterd.task import format_date, parse_date

UTC = timezone.utc


def times(expr, start, n, tz=None):
    return [format_date(d) for d in upcoming(parse_cron(expr), parse_date(start), n, tz)]


@pytest.mark.parametrize("why,expr,tz,start,expected", [
    ("weekdays at 03:00 Lisbon (winter: UTC+0)", "0 3 * * 1-5", "Europe/Lisbon", "2026-12-04T00:00:00Z",
     ["2026-12-04T03:00:00Z", "2026-12-07T03:00:00Z", "2026-12-08T03:00:00Z"]),
    ("weekdays at 03:00 Lisbon (summer: UTC+1)", "0 3 * * MON-FRI", "Europe/Lisbon", "2026-07-03T00:00:00Z",
     ["2026-07-03T02:00:00Z", "2026-07-06T02:00:00Z"]),
    ("the start itself when it matches", "0 3 * * *", None, "2026-12-01T03:00:00Z",
     ["2026-12-01T03:00:00Z", "2026-12-02T03:00:00Z"]),
    ("*/15", "*/15 * * * *", None, "2026-12-01T00:07:00Z",
     ["2026-12-01T00:15:00Z", "2026-12-01T00:30:00Z", "2026-12-01T00:45:00Z", "2026-12-01T01:00:00Z"]),
    ("5-59/20: from 5, every 20", "5-59/20 * * * *", None, "2026-12-01T00:00:00Z",
     ["2026-12-01T00:05:00Z", "2026-12-01T00:25:00Z", "2026-12-01T00:45:00Z", "2026-12-01T01:05:00Z"]),
    ("0 0 31 * *: months without a 31st are skipped, not clipped", "0 0 31 * *", None, "2026-01-31T00:00:01Z",
     ["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z"]),
    ("29 February: leap years only (2100 is not one)", "0 0 29 2 *", None, "2096-03-01",
     ["2104-02-29T00:00:00Z", "2108-02-29T00:00:00Z"]),
    ("day of month and of week both restricted: either (Vixie)", "0 0 13 * 5", None, "2026-11-01",
     ["2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z",
      "2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z"]),
    ("day of month starting with * (even */2): both must match (Vixie's DOM_STAR)", "0 0 */2 * 1", None,
     "2026-11-01", ["2026-11-09T00:00:00Z", "2026-11-23T00:00:00Z", "2026-12-07T00:00:00Z"]),
    ("7 is Sunday, like 0", "0 0 * * 7", None, "2026-12-01", ["2026-12-06T00:00:00Z", "2026-12-13T00:00:00Z"]),
    ("names in any case, ranges of names", "0 12 1 jan-Mar *", None, "2026-02-02",
     ["2026-03-01T12:00:00Z", "2027-01-01T12:00:00Z"]),
    ("six fields: seconds first", "*/20 * * * * *", None, "2026-12-01T00:00:05.5Z",
     ["2026-12-01T00:00:20Z", "2026-12-01T00:00:40Z", "2026-12-01T00:01:00Z"]),
    ("every second, from a start with milliseconds: whole seconds", "* * * * * *", None,
     "2026-12-01T00:00:00.250Z", ["2026-12-01T00:00:01Z", "2026-12-01T00:00:02Z"]),
    ("@yearly", "@yearly", None, "2026-12-01", ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("@weekly is Sunday midnight", "@weekly", None, "2026-12-01", ["2026-12-06T00:00:00Z"]),
    ("@hourly", "@hourly", None, "2026-12-01T00:00:01Z", ["2026-12-01T01:00:00Z", "2026-12-01T02:00:00Z"]),
    # Daylight saving. Lisbon: 29 March 2026 01:00 WET -> 02:00 WEST; 25 October 02:00 WEST -> 01:00 WET.
    ("Lisbon spring: a fixed time the jump skips runs right after it", "30 1 * * *", "Europe/Lisbon",
     "2026-03-28T00:00:00Z", ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
    ("Lisbon spring: several skipped fixed times run once", "0,20,40 1 * * *", "Europe/Lisbon",
     "2026-03-29T00:00:00Z", ["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"]),
    ("Lisbon spring: a wild job runs at the times that exist", "*/30 * * * *", "Europe/Lisbon",
     "2026-03-29T00:00:00Z", ["2026-03-29T00:00:00Z", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z",
                              "2026-03-29T01:30:00Z"]),
    ("Lisbon spring: an hourly job (wild hour) skips the missing hour", "30 * * * *", "Europe/Lisbon",
     "2026-03-29T00:00:00Z", ["2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z"]),
    ("Lisbon autumn: a fixed time in the repeated hour runs once, the first time", "30 1 * * *", "Europe/Lisbon",
     "2026-10-25T00:00:00Z", ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
    ("Lisbon autumn: a wild job runs in both passes of the repeated hour", "0 * * * *", "Europe/Lisbon",
     "2026-10-24T23:30:00Z", ["2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]),
    # New York: 8 March 2026 02:00 EST -> 03:00 EDT; 1 November 02:00 EDT -> 01:00 EST.
    ("New York spring: 02:30 runs at 03:00 EDT", "30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z",
     ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]),
    ("New York spring: every 15 minutes goes on at 03:00", "*/15 * * * *", "America/New_York",
     "2026-03-08T06:40:00Z", ["2026-03-08T06:45:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"]),
    ("New York autumn: 01:30 runs once (EDT)", "30 1 * * *", "America/New_York", "2026-11-01T00:00:00Z",
     ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]),
    ("New York autumn: a wild minute in hour 1 runs both passes", "*/30 1 * * *", "America/New_York",
     "2026-11-01T00:00:00Z", ["2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z",
                              "2026-11-01T06:30:00Z", "2026-11-02T06:00:00Z"]),
    ("New York: a job outside the changed hour keeps its wall time", "0 3 * * *", "America/New_York",
     "2026-03-07T00:00:00Z", ["2026-03-07T08:00:00Z", "2026-03-08T07:00:00Z", "2026-03-09T07:00:00Z"]),
])
def test_next_times(why, expr, tz, start, expected):
    assert times(expr, start, len(expected), tz) == expected, why


@pytest.mark.parametrize("expr,message", [
    ("0 25 * * *", 'cron "0 25 * * *": hour 25 is not in 0-23'),
    ("60 * * * *", 'cron "60 * * * *": minute 60 is not in 0-59'),
    ("0 0 0 * *", 'cron "0 0 0 * *": day of month 0 is not in 1-31'),
    ("0 0 * 13 *", 'cron "0 0 * 13 *": month 13 is not in 1-12'),
    ("0 0 * * 8", 'cron "0 0 * * 8": day of week 8 is not in 0-7'),
    ("60 0 0 * * *", 'cron "60 0 0 * * *": second 60 is not in 0-59'),
    ("@reboot", 'cron "@reboot": a worker\'s start is not a schedule (it restarts on upgrades and '
                "failures); give times, or start the job from its own systemd unit"),
    ("@fortnightly", 'cron "@fortnightly" is not one of @yearly @annually @monthly @weekly @daily '
                     "@midnight @hourly"),
    ("* * * *", 'cron "* * * *" has 4 fields; give 5 (minute hour day-of-month month day-of-week) '
                "or 6 (second first)"),
    ("", 'cron "" has 0 fields; give 5 (minute hour day-of-month month day-of-week) or 6 (second first)'),
    ("5/10 * * * *", 'cron "5/10 * * * *": minute 5/10: a step needs a range or * (write 5-59/10)'),
    ("*/0 * * * *", 'cron "*/0 * * * *": minute step 0 in */0 must be 1 or more'),
    ("*/x * * * *", 'cron "*/x * * * *": minute step x in */x is not a number'),
    ("5-1 * * * *", 'cron "5-1 * * * *": minute range 5-1 goes backwards'),
    ("1,,2 * * * *", 'cron "1,,2 * * * *": minute has an empty item (two commas, or one at an end)'),
    ("MON * * * *", 'cron "MON * * * *": minute MON is not a number'),
    ("0 0 * FOO *", 'cron "0 0 * FOO *": month FOO is not a number or a month name (JAN-DEC)'),
    ("0 0 L * *", 'cron "0 0 L * *": day of month L is not a number'),
    ("0 0 ? * 1", 'cron "0 0 ? * 1": day of month ? is not a number'),
    ("0 0 * * 1#2", 'cron "0 0 * * 1#2": day of week 1#2 is not a number or a day name (SUN-SAT)'),
    ("0 0 30 2 *", 'cron "0 0 30 2 *" never runs: no month it names has day 30'),
    ("0 0 31 4,6,9,11 *", 'cron "0 0 31 4,6,9,11 *" never runs: no month it names has day 31'),
    (3, 'cron 3 is not a cron expression like "0 3 * * 1-5"'),
])
def test_bad_expressions_say_which_field_and_why(expr, message):
    with pytest.raises(CronError) as caught:
        parse_cron(expr)
    assert str(caught.value) == message


@pytest.mark.parametrize("expr", ["0 0 30 2 1", "0 0 29 2 *", "@annually", "@midnight", "@daily",
                                  "@monthly", " 0  3\t* * * ", "00 03 * * *", "0 0 * * 0-7",
                                  "0-59/59 * * * *", "*/100 * * * *"])
def test_good_expressions(expr):
    parse_cron(expr)


@pytest.mark.parametrize("expr,gap_s", [
    ("* * * * * *", 1), ("*/20 * * * * *", 20), ("0,59 * * * * *", 1), ("* * * * *", 60),
    ("*/15 * * * *", 900), ("5-59/20 * * * *", 1200), ("0 3 * * *", 86400), ("0 */6 * * *", 6 * 3600),
    ("0 0,23 * * *", 3600), ("@yearly", 86400),
])
def test_min_gap(expr, gap_s):
    assert min_gap_s(parse_cron(expr)) == gap_s


def test_next_after_is_strictly_after():
    cron = parse_cron("0 3 * * *")
    t = parse_date("2026-12-01T03:00:00Z")
    assert at_or_after(cron, t) == t
    assert next_after(cron, t) == parse_date("2026-12-02T03:00:00Z")


def test_far_indices_are_found_without_a_walk():
    """The 30,000,000th second after a start is a year away: found through the year tables."""
    cron = parse_cron("* * * * * *")
    start = parse_date("2026-01-01T00:00:00Z")
    assert nth(cron, start, 30_000_000) == start + timedelta(seconds=30_000_000)
    assert count_between(cron, start, start + timedelta(days=400)) == 400 * 86400


def test_nothing_past_the_last_year():
    assert at_or_after(parse_cron("0 0 29 2 *"), parse_date("2999-03-01")) is None


# ---- the day-by-day arithmetic against a plain walk over wall-clock minutes -------------------

def reference(expr, tz, start, end):
    """Occurrences in [start, end) by the rules in words: walk every local minute; a time
    that exists once runs then; twice (fall back): the first, and the second too for a wild
    job; never (spring forward): a fixed job runs at the jump's end, a wild one not."""
    cron = parse_cron(expr)
    zone = ZoneInfo(tz)
    out = set()
    wall = start.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) - timedelta(days=1)
    stop = end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    while wall < stop:
        if (wall.minute in cron.minutes and wall.hour in cron.hours and wall.month in cron.months
                and ((wall.day in cron.days or (wall.weekday() + 1) % 7 in cron.weekdays) if cron.day_or
                     else (wall.day in cron.days and (wall.weekday() + 1) % 7 in cron.weekdays))):
            first = wall.replace(tzinfo=zone, fold=0)
            second = wall.replace(tzinfo=zone, fold=1)
            a, b = first.astimezone(UTC), second.astimezone(UTC)
            if a.astimezone(zone).replace(tzinfo=None) != wall:      # does not exist
                if not cron.wild:
                    out.add(jump_end(zone, a))
            else:
                out.add(a)
                if a != b and cron.wild:
                    out.add(b)
        wall += timedelta(minutes=1)
    return sorted(t for t in out if start <= t < end)


def jump_end(zone, near):
    """The instant a jump forward ends (the offset changes), searched near `near`."""
    lo = int(near.timestamp()) - 30 * 3600     # Samoa skipped a whole day
    hi = int(near.timestamp()) + 3 * 3600
    o = datetime.fromtimestamp(lo, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == o:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


minute_field = st.sampled_from(["*", "*/15", "0", "30", "0,30", "5-59/20", "59", "*/7"])
hour_field = st.sampled_from(["*", "0", "1", "2", "1-3", "*/2", "23", "0,1,2"])
dom_field = st.sampled_from(["*", "1", "*/2", "13", "25-31", "31"])
dow_field = st.sampled_from(["*", "0", "1-5", "SUN", "5"])
month_field = st.sampled_from(["*", "3", "10,11", "3,10", "*"])
zones = st.sampled_from(["Europe/Lisbon", "America/New_York", "Australia/Lord_Howe", "UTC",
                         "America/Havana", "Pacific/Apia"])
starts = st.sampled_from(["2026-03-27T22:00:00Z", "2026-10-24T12:00:00Z", "2026-11-01T00:00:00Z",
                          "2026-03-08T00:00:00Z", "2026-04-04T00:00:00Z", "2026-03-14T00:00:00Z",
                          "2011-12-29T00:00:00Z", "2026-09-26T00:00:00Z"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minute=minute_field, hour=hour_field, dom=dom_field, month=month_field, dow=dow_field,
       tz=zones, start=starts)
def test_counting_and_indexing_agree_with_a_minute_walk(minute, hour, dom, month, dow, tz, start):
    expr = f"{minute} {hour} {dom} {month} {dow}"
    try:
        cron = parse_cron(expr)
    except CronError:
        return
    t0 = parse_date(start)
    t1 = t0 + timedelta(days=3)
    expected = reference(expr, tz, t0, t1)
    assert count_between(cron, t0, t1, tz) == len(expected)
    assert [nth(cron, t0, k, tz) for k in range(len(expected))] == expected
