"""Repeat math: offsets from the anchor, tz wall-clock, until/count, rrule, plan, catch-up,
durations (pure, table-driven)."""

import time
from datetime import datetime, timedelta, timezone

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afterd.catchup import catch_up
from afterd.repeat import (duration_s, duration_units, occurrence, parse_duration,
                           parse_repeat, plan)
from afterd.task import TaskError, format_date, parse_date

UTC = timezone.utc


def chain(anchor, repeat, n):
    rep = parse_repeat(repeat)
    return [format_date(d) if d else None for d in (occurrence(parse_date(anchor), rep, k) for k in range(n))]


@pytest.mark.parametrize("why,anchor,repeat,expected", [
    ("Jan 31 + months: clipped, never chained", "2026-01-31", {"months": 1},
     ["2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"]),
    ("Jan 31 + months in a leap year", "2024-01-31", {"M": 1},
     ["2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z"]),
    ("29 Feb + 1 year: 28 Feb until the next leap year", "2024-02-29T12:00:00Z", {"years": 1},
     ["2024-02-29T12:00:00Z", "2025-02-28T12:00:00Z", "2026-02-28T12:00:00Z", "2027-02-28T12:00:00Z",
      "2028-02-29T12:00:00Z"]),
    ("month and seven days (the real example)", "2012-02-27", {"days": 7, "months": 1},
     ["2012-02-27T00:00:00Z", "2012-04-03T00:00:00Z", "2012-05-11T00:00:00Z", "2012-06-17T00:00:00Z"]),
    ("short keys combined", "2026-01-01", {"w": 1, "d": 1, "h": 1, "m": 1, "s": 1, "ms": 1},
     ["2026-01-01T00:00:00Z", "2026-01-09T01:01:01.001Z", "2026-01-17T02:02:02.002Z"]),
    ("fractional days", "2026-01-01", {"days": 0.5},
     ["2026-01-01T00:00:00Z", "2026-01-01T12:00:00Z", "2026-01-02T00:00:00Z"]),
    ("milliseconds kept", "2026-01-01T00:00:00.250Z", {"ms": 500},
     ["2026-01-01T00:00:00.250Z", "2026-01-01T00:00:00.750Z", "2026-01-01T00:00:01.250Z"]),
    ("UTC without tz: same UTC time across Lisbon's DST", "2026-03-28T03:00:00Z", {"days": 1},
     ["2026-03-28T03:00:00Z", "2026-03-29T03:00:00Z", "2026-03-30T03:00:00Z"]),
    ("Lisbon 03:00 stays 03:00 local across spring forward", "2026-03-28T03:00:00Z",
     {"days": 1, "tz": "Europe/Lisbon"},
     ["2026-03-28T03:00:00Z", "2026-03-29T02:00:00Z", "2026-03-30T02:00:00Z"]),
    ("Lisbon 01:30 does not exist on 29 Mar: moved forward by the gap to 02:30 local",
     "2026-03-28T01:30:00Z", {"days": 1, "tz": "Europe/Lisbon"},
     ["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"]),
    ("Lisbon 01:30 happens twice on 25 Oct: the first", "2026-10-24T01:30:00+01:00",
     {"days": 1, "tz": "Europe/Lisbon"},
     ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
    ("New York 02:30 does not exist on 8 Mar: 03:30 EDT", "2026-03-07T02:30:00-05:00",
     {"d": 1, "tz": "America/New_York"},
     ["2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"]),
    ("New York 01:30 happens twice on 1 Nov: the first (EDT)", "2026-10-31T01:30:00-04:00",
     {"d": 1, "tz": "America/New_York"},
     ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]),
    ("New York monthly at 09:00 local, winter to summer", "2026-02-15T09:00:00-05:00",
     {"M": 1, "tz": "America/New_York"},
     ["2026-02-15T14:00:00Z", "2026-03-15T13:00:00Z", "2026-04-15T13:00:00Z"]),
    ("until is inclusive", "2026-01-01", {"days": 1, "until": "2026-01-03"},
     ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", None]),
    ("count is the total, anchor included", "2026-01-01", {"days": 1, "count": 2},
     ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None, None]),
    ("rrule: the anchor first, then the rule's instances", "2026-01-01", {"rrule": "FREQ=DAILY;BYHOUR=3"},
     ["2026-01-01T00:00:00Z", "2026-01-01T03:00:00Z", "2026-01-02T03:00:00Z"]),
    ("rrule in Lisbon wall-clock across spring forward", "2026-03-27T00:00:00Z",
     {"rrule": "FREQ=DAILY;BYHOUR=3", "tz": "Europe/Lisbon"},
     ["2026-03-27T00:00:00Z", "2026-03-27T03:00:00Z", "2026-03-28T03:00:00Z", "2026-03-29T02:00:00Z"]),
    ("rrule COUNT counts from the anchor", "2026-01-01", {"rrule": "RRULE:FREQ=DAILY;COUNT=3"},
     ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", None]),
    ("rrule with until", "2026-01-05", {"rrule": "FREQ=WEEKLY;BYDAY=MO,FR", "until": "2026-01-12"},
     ["2026-01-05T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-12T00:00:00Z", None]),
])
def test_occurrences(why, anchor, repeat, expected):
    assert chain(anchor, repeat, len(expected)) == expected, why


@pytest.mark.parametrize("a,b", [
    ({"M": 1}, {"months": 1}), ({"w": 1}, {"days": 7}), ({"y": 1}, {"months": 12}),
    ({"h": 24}, {"d": 1}), ({"ms": 1000}, {"s": 1}), ({"m": 1}, {"seconds": 60}),
])
def test_long_and_short_keys_mean_the_same(a, b):
    assert parse_repeat(a).offset == parse_repeat(b).offset


@pytest.mark.parametrize("value,says", [
    ({"D": 1}, "unknown key 'D'"),
    ({"days": True}, "must be a number"),
    ({"months": 0.5}, "whole number"),
    ({"days": -1, "months": 2}, "negative"),
    ({"days": 0}, "zero"),
    ({"days": 1, "d": 1}, "twice"),
    ({"days": 1, "rrule": "FREQ=DAILY"}, "not both"),
    ({"count": 3}, "give an offset"),
    ({"days": 1, "tz": "Nowhere/City"}, "not a known IANA time zone"),
    ({"rrule": "FREQ=FORTNIGHTLY"}, "rrule"),
    ({"days": 1, "until": "2026-02-30"}, "until: "),
])
def test_parse_repeat_refuses(value, says):
    with pytest.raises(TaskError) as caught:
        parse_repeat(value)
    assert str(caught.value).startswith("repeat: ") and says in str(caught.value)


def test_real_example_planned_from_2026_11_23():
    """2012-02-27 every month and 7 days, a worker down since: the next is the first future one."""
    anchor, now = parse_date("2012-02-27"), parse_date("2026-11-23")
    rep = parse_repeat({"days": 7, "months": 1})
    k, date = plan(anchor, rep, 0, now)
    assert date == anchor + relativedelta(months=k, days=7 * k)
    assert date > now >= occurrence(anchor, rep, k - 1)
    assert (k, format_date(date)) == (144, "2026-12-01T00:00:00Z")


@pytest.mark.parametrize("why,anchor,repeat,planned_k,now,expected", [
    ("nothing missed: the next one", "2026-01-01", {"days": 1}, 0, "2026-01-01T00:00:00Z",
     (1, "2026-01-02T00:00:00Z")),
    ("missed ones collapse", "2026-01-01", {"days": 1}, 0, "2026-01-05T12:00:00Z",
     (5, "2026-01-06T00:00:00Z")),
    ("exactly on an occurrence: strictly after now", "2026-01-01", {"days": 1}, 2, "2026-01-05T00:00:00Z",
     (5, "2026-01-06T00:00:00Z")),
    ("count ends the chain", "2026-01-01", {"days": 1, "count": 3}, 2, "2026-01-03T00:00:00Z", (None, None)),
    ("collapsed occurrences count as passed", "2026-01-01", {"days": 1, "count": 5}, 0, "2026-01-10",
     (None, None)),
    ("within count after collapse", "2026-01-01", {"days": 1, "count": 5}, 0, "2026-01-03T12:00:00Z",
     (3, "2026-01-04T00:00:00Z")),
    ("until ends the chain", "2026-01-01", {"days": 1, "until": "2026-01-03T06:00:00Z"}, 2, "2026-01-03",
     (None, None)),
    ("rrule collapse", "2026-01-01", {"rrule": "FREQ=DAILY;BYHOUR=3"}, 1, "2026-01-04T04:00:00Z",
     (5, "2026-01-05T03:00:00Z")),
    ("rrule exhausted", "2026-01-01", {"rrule": "FREQ=DAILY;COUNT=2"}, 1, "2026-01-02", (None, None)),
    ("rrule with count", "2026-01-01", {"rrule": "FREQ=DAILY", "count": 2}, 1, "2026-01-02", (None, None)),
    ("planned far ahead of now: still after planned_k", "2026-01-01", {"days": 1}, 10, "2026-01-02",
     (11, "2026-01-12T00:00:00Z")),
])
def test_plan(why, anchor, repeat, planned_k, now, expected):
    k, date = plan(parse_date(anchor), parse_repeat(repeat), planned_k, parse_date(now))
    assert (k, format_date(date) if date else None) == expected, why


@pytest.mark.parametrize("repeat", [{"s": 1}, {"ms": 1}, {"M": 1, "ms": 1}, {"s": 1, "tz": "Europe/Lisbon"}])
def test_plan_is_fast_across_a_huge_gap(repeat):
    """Every second (or millisecond) from 2012 to 2026: hundreds of millions missed, no walk."""
    anchor, now = parse_date("2012-02-27"), parse_date("2026-11-23T10:00:00.0005Z")
    rep = parse_repeat(repeat)
    started = time.monotonic()
    k, date = plan(anchor, rep, 0, now)
    elapsed_s = time.monotonic() - started
    assert date > now >= occurrence(anchor, rep, k - 1)
    assert elapsed_s < 1.0, f"plan took {elapsed_s:.3f}s"       # generous: it takes about 1 ms


def test_plan_every_second_is_exact():
    anchor, now = parse_date("2012-02-27"), parse_date("2026-11-23T10:00:00.5Z")
    k, date = plan(anchor, parse_repeat({"s": 1}), 0, now)
    assert format_date(date) == "2026-11-23T10:00:01Z"
    assert k == int((date - anchor).total_seconds())


# Properties: for any chain and any now, the next occurrence is after now, and nothing
# between the last missed one and it is skipped.

ZONES = [None, "Europe/Lisbon", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
UNIT_KEYS = ["years", "months", "weeks", "days", "hours", "minutes", "seconds", "milliseconds"]

offsets = st.dictionaries(st.sampled_from(UNIT_KEYS), st.integers(0, 40), min_size=1).filter(
    lambda d: any(d.values()))
anchors = st.datetimes(datetime(2000, 1, 1), datetime(2030, 12, 31)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC))
gaps = st.one_of(st.timedeltas(timedelta(0), timedelta(days=3)),
                 st.timedeltas(timedelta(0), timedelta(days=365 * 25)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(anchor=anchors, offset=offsets, tz=st.sampled_from(ZONES), gap=gaps)
def test_plan_next_is_after_now_and_never_skips_the_latest_missed(anchor, offset, tz, gap):
    rep = parse_repeat(dict(offset, tz=tz) if tz else offset)
    now = anchor + gap
    k, date = plan(anchor, rep, 0, now)
    if k is None:       # only past what a datetime can hold
        assert occurrence(anchor, rep, 1) is None or occurrence(anchor, rep, 1) > anchor
        return
    assert date > now
    assert occurrence(anchor, rep, k) == date
    assert occurrence(anchor, rep, k - 1) <= now


@settings(max_examples=150, deadline=None)
@given(anchor=anchors, offset=offsets, tz=st.sampled_from(ZONES),
       steps=st.integers(0, 60), planned_k=st.integers(0, 5), count=st.one_of(st.none(), st.integers(1, 40)))
def test_plan_agrees_with_walking_the_chain(anchor, offset, tz, steps, planned_k, count):
    """For short gaps a plain walk is the obvious answer: the search must give the same."""
    rep = parse_repeat(dict(offset, **({"tz": tz} if tz else {}), **({"count": count} if count else {})))
    uncounted = parse_repeat(dict(offset, **({"tz": tz} if tz else {})))
    now = occurrence(anchor, uncounted, steps) or anchor
    expected = (None, None)
    k = planned_k + 1
    while True:
        date = occurrence(anchor, uncounted, k)
        if date is None:
            break
        if date > now:
            expected = (k, date) if count is None or k < count else (None, None)
            break
        k += 1
    assert plan(anchor, rep, planned_k, now) == expected


# ---- catch-up ----------------------------------------------------------------------------------

R = range


@pytest.mark.parametrize("why,repeat,planned_k,now,mode,window_s,grace_s,expected", [
    # (missed, runs, next_k, next date)
    ("nothing due yet", {"days": 1}, 2, "2026-0102T12:00:00Z".replace("01", "01-", 1), "one", None, 1.0,
     (R(2, 2), R(2, 2), 2, "2026-01-03T00:00:00Z")),
    ("one: the missed collapse into the latest", {"days": 1}, 0, "2026-01-05T12:00:00Z", "one", None, 1.0,
     (R(0, 5), R(4, 5), 5, "2026-01-06T00:00:00Z")),
    ("all: each in order", {"days": 1}, 0, "2026-01-05T12:00:00Z", "all", None, 1.0,
     (R(0, 5), R(0, 5), 5, "2026-01-06T00:00:00Z")),
    ("none: nothing missed runs", {"days": 1}, 0, "2026-01-05T12:00:00Z", "none", None, 1.0,
     (R(0, 5), R(5, 5), 5, "2026-01-06T00:00:00Z")),
    ("none: a timer a little late is on time", {"days": 1}, 4, "2026-01-05T00:00:00.300Z", "none", None, 1.0,
     (R(4, 5), R(4, 5), 5, "2026-01-06T00:00:00Z")),
    ("none on resume (grace 0): even the latest is skipped", {"days": 1}, 4, "2026-01-05T00:00:00.300Z", "none",
     None, 0, (R(4, 5), R(5, 5), 5, "2026-01-06T00:00:00Z")),
    ("all within a window of 2 days", {"days": 1}, 0, "2026-01-05T12:00:00Z", "all", 2 * 86400, 1.0,
     (R(0, 5), R(3, 5), 5, "2026-01-06T00:00:00Z")),
    ("the window's edge is kept", {"days": 1}, 0, "2026-01-05T00:00:00Z", "all", 86400, 1.0,
     (R(0, 5), R(3, 5), 5, "2026-01-06T00:00:00Z")),
    ("one: all older than the window, none runs", {"days": 1}, 0, "2026-01-05T12:00:00Z", "one", 3600, 1.0,
     (R(0, 5), R(5, 5), 5, "2026-01-06T00:00:00Z")),
    ("count ends the chain: the missed stop at it", {"days": 1, "count": 3}, 0, "2026-01-10", "all", None, 1.0,
     (R(0, 3), R(0, 3), None, None)),
    ("until ends the chain", {"days": 1, "until": "2026-01-02T12:00:00Z"}, 1, "2026-01-10", "one", None, 1.0,
     (R(1, 2), R(1, 2), None, None)),
    ("rrule: all in order", {"rrule": "FREQ=DAILY;BYHOUR=3"}, 1, "2026-01-03T04:00:00Z", "all", None, 1.0,
     (R(1, 4), R(1, 4), 4, "2026-01-04T03:00:00Z")),
    ("rrule with COUNT exhausted", {"rrule": "FREQ=DAILY;COUNT=3"}, 1, "2026-02-01", "all", None, 1.0,
     (R(1, 3), R(1, 3), None, None)),
])
def test_catch_up(why, repeat, planned_k, now, mode, window_s, grace_s, expected):
    got = catch_up(parse_date("2026-01-01"), parse_repeat(repeat), planned_k, parse_date(now), mode,
                   window_s, grace_s)
    assert (got.missed, got.runs, got.next_k, format_date(got.next_date) if got.next_date else None) == \
        expected, why


@settings(max_examples=150, deadline=None)
@given(anchor=anchors, offset=offsets, tz=st.sampled_from(ZONES), steps=st.integers(0, 60),
       planned_k=st.integers(0, 5), count=st.one_of(st.none(), st.integers(1, 40)))
def test_catch_up_one_is_plan(anchor, offset, tz, steps, planned_k, count):
    """Mode "one" keeps today's rule: the next occurrence is plan()'s."""
    rep = parse_repeat(dict(offset, **({"tz": tz} if tz else {}), **({"count": count} if count else {})))
    uncounted = parse_repeat(dict(offset, **({"tz": tz} if tz else {})))
    now = occurrence(anchor, uncounted, steps) or anchor
    due = occurrence(anchor, rep, planned_k)
    if due is None or due > now:
        return
    got = catch_up(anchor, rep, planned_k, now, "one")
    assert (got.next_k, got.next_date) == plan(anchor, rep, planned_k, now)
    assert got.runs == range(got.missed.stop - 1, got.missed.stop) and planned_k in got.missed
    assert all(occurrence(anchor, rep, k) <= now for k in got.missed)


def test_catch_up_all_after_years_is_a_range_not_a_list():
    """Every second since 2012: hundreds of millions missed, answered without a walk."""
    started = time.monotonic()
    got = catch_up(parse_date("2012-02-27"), parse_repeat({"s": 1}), 0, parse_date("2026-11-23T10:00:00.5Z"),
                   "all", window_s=10)
    assert time.monotonic() - started < 1.0
    assert len(got.missed) > 400_000_000 and len(got.runs) == 10


# ---- durations -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("1M7d", {"months": 1, "days": 7}), ("1h30m", {"hours": 1, "minutes": 30}), ("90s", {"seconds": 90}),
    ("250ms", {"milliseconds": 250}), ("1y", {"years": 1}), ("2w", {"weeks": 2}),
    ("1m1ms", {"minutes": 1, "milliseconds": 1}),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text,says", [
    ("", "is not a duration"), ("1x", "is not a duration"), ("1h 30m", "is not a duration"),
    ("h", "is not a duration"), ("1h1h", "given twice"), ("0d", "is zero"), ("٣s", "is not a duration"),
    ("9999999999999999s", "too large"), (5, "is not a duration"),
])
def test_parse_duration_refuses(text, says):
    with pytest.raises(TaskError) as caught:
        parse_duration(text, "--every")
    assert str(caught.value).startswith("--every: ") and says in str(caught.value)


@pytest.mark.parametrize("value,expected_s", [
    (0, 0.0), (30, 30.0), (0.5, 0.5), ("30s", 30.0), ("1h30m", 5400.0), ("1500ms", 1.5), ("0s", 0.0),
    ("1w1d", 8 * 86400.0),
])
def test_duration_s(value, expected_s):
    assert duration_s(value, "jitter") == expected_s


@pytest.mark.parametrize("value,says", [
    (-1, "negative"), ("1M", "use days"), ("1y", "use days"), (True, "not a duration"), (None, "not a duration"),
    (1e12, "too large"), ("999999999999999w", "too large"), ("soon", "not a duration"),
])
def test_duration_s_refuses(value, says):
    with pytest.raises(TaskError) as caught:
        duration_s(value, "jitter")
    assert str(caught.value).startswith("jitter: ") and says in str(caught.value)


def test_duration_units_allow_zero():
    assert duration_units("0s") == {"seconds": 0}
