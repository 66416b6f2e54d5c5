"""A cron task run by a real worker (`after start`) on the real CouchDB-API server: it runs at
each match, and its `date` says when it runs next; the claim writes the first match."""

import time
from datetime import timedelta

from afterd.task import format_date, parse_date
from helpers import wait_for
from test_engine import killed_at_end, post_all, record_task, update, utcnow, worker  # noqa: F401 (fixtures)
from workers import read_runs


def starts(records):
    return [r for r in read_runs(records) if r["event"] == "start"]


def test_a_cron_task_every_second_runs_at_each_match_and_date_shows_the_next(couch, worker, records):
    worker().start()
    user_date = utcnow() + timedelta(seconds=1.5)           # not a whole second: the first match is after it
    [task_id] = post_all(couch, [record_task(records, user_date, repeat={"cron": "* * * * * *"})])
    wait_for(lambda: len(starts(records)) >= 4, 30, "four runs of a task that runs every second")
    doc = couch.get(task_id)
    runs = starts(records)
    dates = [parse_date(r["date"]) for r in runs]
    # Each run was due at a whole second, the first at or after the user's date, one second apart
    # (a run that started late ran the latest due occurrence: catch-up "one").
    assert dates[0] >= user_date and dates[0] - user_date < timedelta(seconds=1)
    assert all(d.microsecond == 0 for d in dates)
    assert all(b > a for a, b in zip(dates, dates[1:]))
    assert all(0 <= r["t"] - parse_date(r["date"]).timestamp() < 2 for r in runs)   # never early
    # The user's date stays in `anchor`; `date` is the next occurrence, after the last run's.
    assert doc["anchor"] == format_date(user_date)
    assert doc["status"] in ("scheduled", "running")
    assert parse_date(doc["date"]) > parse_date(doc["last_run"]["date"])
    assert parse_date(doc["date"]).microsecond == 0

    # Paused, it misses a few seconds; resumed, those collapse into one run (catch-up "one"),
    # then it goes on at each second.
    update(couch, task_id, status="pause")
    wait_for(lambda: couch.get(task_id)["status"] == "paused", 10, "the cron task to be paused")
    paused_runs = len(starts(records))
    time.sleep(2.5)   # an observation window: nothing runs while paused
    assert len(starts(records)) == paused_runs
    resumed_at = utcnow()
    update(couch, task_id, status="resume")
    wait_for(lambda: len(starts(records)) >= paused_runs + 3, 30, "three runs after the resume")
    after_resume = [parse_date(r["date"]) for r in starts(records)[paused_runs:]]
    assert len([d for d in after_resume if d < resumed_at - timedelta(seconds=1)]) <= 1, after_resume

    update(couch, task_id, status="cancel")
    wait_for(lambda: couch.get(task_id)["status"] == "canceled", 10, "the cron task to be canceled")


def test_the_claim_writes_the_first_match_and_keeps_the_users_date_as_anchor(couch, worker, records):
    worker().start()
    user_date = utcnow().replace(microsecond=0)
    [task_id] = post_all(couch, [record_task(records, user_date, repeat={"cron": "0 3 * * 1-5",
                                                                            "tz": "Europe/Lisbon"})])
    doc = wait_for(lambda: (lambda d: d if d["status"] == "scheduled" else None)(couch.get(task_id)), 15,
                   "the cron task to be claimed")
    from afterd.cron import at_or_after, parse_cron

    assert doc["anchor"] == format_date(user_date)
    assert doc["date"] == format_date(at_or_after(parse_cron("0 3 * * 1-5"), user_date, "Europe/Lisbon"))
    assert doc["occurrence"] == 0 and starts(records) == []
