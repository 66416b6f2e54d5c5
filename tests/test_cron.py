"""Cron math (afterd/cron.py): parse, next times across daylight saving, counting (pure,
table-driven; `now` and the start are arguments). Where cron implementations differ, a row
says which way after goes (README, "repeat.cron")."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
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


CASES = json.loads((Path(__file__).parent / "cron_cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("expr,message", CASES["bad"], ids=[e for e, _ in CASES["bad"]])
def test_bad_expressions_say_which_field_and_why(expr, message):
    """The same table runs through validate_doc_update (test_validation.py)."""
    with pytest.raises(CronError) as caught:
        parse_cron(expr)
    assert str(caught.value) == message


@pytest.mark.parametrize("expr", CASES["good"])
def test_good_expressions(expr):
    parse_cron(expr)


def test_a_non_string_is_refused():
    with pytest.raises(CronError, match='^cron must be a string like "0 3 \\* \\* 1-5"$'):
        parse_cron(3)


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


# ---- a cron repeat in the chain machinery: occurrence, plan, catch-up, overlap, outcome --------

from afterd.catchup import catch_up  # noqa: E402
from afterd.outcome import Outcome, apply_outcome, first_date, missed_fields, outcome_fields, replace_due  # noqa: E402
from afterd.repeat import occurrence, parse_repeat, plan  # noqa: E402
from afterd.task import TaskError, parse_task  # noqa: E402


def cron_task(expr="0 3 * * 1-5", tz="Europe/Lisbon", **fields):
    repeat = {"cron": expr, **({"tz": tz} if tz else {}), **fields.pop("repeat_extra", {})}
    return {"_id": "t", "worker": "w", "date": "2026-12-01T03:00:00Z", "status": "scheduled",
            "job": {"name": "j", "arguments": []}, "repeat": repeat, **fields}


def test_occurrence_zero_is_the_first_match_at_or_after_the_date():
    """Friday 4 December 2026 10:00: the first weekday 03:00 is Monday the 7th."""
    rep = parse_repeat({"cron": "0 3 * * 1-5", "tz": "Europe/Lisbon"})
    anchor = parse_date("2026-12-04T10:00:00Z")
    assert [format_date(occurrence(anchor, rep, k)) for k in range(3)] == \
        ["2026-12-07T03:00:00Z", "2026-12-08T03:00:00Z", "2026-12-09T03:00:00Z"]
    task = parse_task(cron_task(date="2026-12-04T10:00:00Z", status="waiting"))
    assert format_date(first_date(task)) == "2026-12-07T03:00:00Z"


def test_until_and_count_end_a_cron_chain():
    rep = parse_repeat({"cron": "0 3 * * *", "count": 2})
    anchor = parse_date("2026-12-01")
    assert occurrence(anchor, rep, 1) == parse_date("2026-12-02T03:00:00Z")
    assert occurrence(anchor, rep, 2) is None
    rep = parse_repeat({"cron": "0 3 * * *", "until": "2026-12-02T12:00:00Z"})
    assert occurrence(anchor, rep, 1) is not None and occurrence(anchor, rep, 2) is None
    assert plan(anchor, rep, 1, parse_date("2026-12-02T03:00:00Z")) == (None, None)
    task = parse_task(cron_task(date="2026-12-03", repeat_extra={"until": "2026-12-02"}))
    assert first_date(task) is None           # nothing left: the claim ends it as done


def test_after_downtime_one_run_then_the_first_future_occurrence():
    """A year of weekday runs missed: catch-up "one" runs the latest, then the next."""
    anchor = parse_date("2025-12-01T03:00:00Z")
    rep = parse_repeat({"cron": "0 3 * * 1-5", "tz": "Europe/Lisbon"})
    now = parse_date("2026-12-04T10:00:00Z")      # a Friday
    cu = catch_up(anchor, rep, 0, now)
    assert len(cu.missed) > 250 and len(cu.runs) == 1
    assert occurrence(anchor, rep, cu.runs[0]) == parse_date("2026-12-04T03:00:00Z")
    assert cu.next_date == parse_date("2026-12-07T03:00:00Z") and cu.next_k == cu.runs[0] + 1
    assert plan(anchor, rep, 0, now) == (cu.next_k, cu.next_date)


def test_a_run_writes_the_next_occurrence_into_date():
    t0 = parse_date("2026-12-07T03:00:00Z").timestamp()
    run = Outcome("r1", True, 1, None, t0, t0 + 2, 0.0)
    doc = cron_task(date="2026-12-07T03:00:00Z", anchor="2026-12-04T10:00:00Z", occurrence=0)
    fields, warning = outcome_fields(doc, run, now=datetime.fromtimestamp(t0 + 2, UTC))
    assert warning is None
    assert (fields["status"], fields["date"], fields["occurrence"]) == ("scheduled", "2026-12-08T03:00:00Z", 1)


def test_every_second_with_a_slow_run_follows_overlap():
    """`* * * * * *`, a run of 3.5 s: wait+one runs the latest due at once, skip the next one."""
    t0 = parse_date("2026-12-01T03:00:00Z").timestamp()
    run = Outcome("r1", True, None, None, t0, t0 + 3.5, 0.0)
    now = datetime.fromtimestamp(t0 + 3.5, UTC)
    doc = cron_task("* * * * * *", None, anchor="2026-12-01T03:00:00Z", occurrence=0)
    fields, _ = outcome_fields(doc, run, now=now)
    assert (fields["date"], fields["occurrence"]) == ("2026-12-01T03:00:03Z", 3)
    fields, _ = outcome_fields({**doc, "overlap": "skip"}, run, now=now)
    assert (fields["date"], fields["occurrence"]) == ("2026-12-01T03:00:04Z", 4)
    assert replace_due({**doc, "overlap": "replace"}, now) == parse_date("2026-12-01T03:00:01Z")


def test_catchup_none_at_arming_moves_past_the_missed_ones():
    doc = cron_task("*/15 * * * *", None, date="2026-12-01T00:00:00Z", anchor="2026-12-01T00:00:00Z",
                    occurrence=0, catchup="none")
    assert missed_fields(doc, parse_date("2026-12-01T01:07:00Z")) == \
        {"date": "2026-12-01T01:15:00Z", "occurrence": 5}


def test_jitter_delays_each_cron_occurrence_and_is_visible_in_date():
    doc = cron_task(date="2026-12-04T10:00:00Z", status="waiting", jitter="10m")
    first = first_date(parse_task(doc))
    plain = parse_date("2026-12-07T03:00:00Z")
    assert plain <= first < plain + timedelta(minutes=10)


def test_a_reschedule_during_a_run_moves_a_cron_chain_to_its_first_match_after_the_new_date():
    base = cron_task(status="reschedule", date="2026-12-05T00:00:00Z")      # a Saturday
    written = apply_outcome(base, {"status": "scheduled", "date": "2026-12-02T03:00:00Z"}, {"process": "p"})
    assert (written["anchor"], written["date"]) == ("2026-12-05T00:00:00Z", "2026-12-07T03:00:00Z")


@pytest.mark.parametrize("repeat,message", [
    ({"cron": "0 25 * * *"}, 'repeat: cron "0 25 * * *": hour 25 is not in 0-23'),
    ({"cron": "0 3 * * *", "days": 1}, "repeat: give either offset keys or a cron expression, not both"),
    ({"cron": "0 3 * * *", "rrule": "FREQ=DAILY"}, "repeat: give either an rrule or a cron expression, not both"),
    ({"cron": "@reboot"}, "repeat: cron \"@reboot\": a worker's start is not a schedule"),
])
def test_the_repeat_field_refuses_bad_cron_naming_it(repeat, message):
    with pytest.raises(TaskError) as caught:
        parse_repeat(repeat)
    assert str(caught.value).startswith(message)


# ---- in words (the console says the same: tests/browser/test_cron_words.py) --------------------

from afterd.cron import describe  # noqa: E402

WORDS = json.loads((Path(__file__).parent / "cron_words.json").read_text(encoding="utf-8"))["rows"]


@pytest.mark.parametrize("expr,tz,words", WORDS, ids=[f"{e} {tz or ''}" for e, tz, _ in WORDS])
def test_describe(expr, tz, words):
    assert describe(expr, tz) == words
