"""`after add --cron`, `after next`, `after show --policies` for cron tasks: the command as a
user runs it (a subprocess) against the real CouchDB-API server; `next_runs` (pure) too."""

from datetime import datetime, timedelta, timezone

import pytest

from afterd.preview import next_runs
from afterd.task import format_date, parse_date
from test_cli import add, after, assert_one_line_error, db_env, env  # noqa: F401 (fixtures)

UTC = timezone.utc


def test_add_cron_with_tz_stores_the_repeat_and_next_lists_weekday_mornings(db_env, couch):
    task_id = add(db_env, "--worker", "manobi", "--job", "report", "--at", "2026-12-04 10:00",
                  "--cron", "0 3 * * 1-5", "--tz", "Europe/Lisbon")
    doc = couch.get(task_id)
    assert doc["repeat"] == {"cron": "0 3 * * 1-5", "tz": "Europe/Lisbon"}
    assert doc["date"] == "2026-12-04T10:00:00Z"        # the user's date; the worker writes the first match

    result = after("next", task_id, "-n", "3", env=db_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2026-12-07T03:00:00Z  Mon 2026-12-07 03:00:00 WET",
        "2026-12-08T03:00:00Z  Tue 2026-12-08 03:00:00 WET",
        "2026-12-09T03:00:00Z  Wed 2026-12-09 03:00:00 WET"]


def test_show_policies_says_the_schedule_in_words(db_env):
    task_id = add(db_env, "--worker", "w", "--job", "j", "--cron", "0 3 * * 1-5", "--tz", "Europe/Lisbon")
    shown = after("show", task_id, "--policies", env=db_env)
    assert shown.returncode == 0, shown.stderr
    rows = dict(line.split(None, 1) for line in shown.stdout.splitlines()[1:])
    assert rows["repeat"] == "at 03:00 on Monday to Friday, Lisbon time (cron 0 3 * * 1-5)"


def test_tasks_table_shows_the_expression(db_env):
    add(db_env, "--worker", "w", "--job", "j", "--at", "2026-12-01", "--cron", "@daily")
    lines = after("tasks", env=db_env).stdout.splitlines()
    assert lines[1].split()[-1] == "@daily"


@pytest.mark.parametrize("args, message", [
    (["--cron", "0 25 * * *"], 'repeat: cron "0 25 * * *": hour 25 is not in 0-23'),
    (["--cron", "@reboot"], "a worker's start is not a schedule"),
    (["--cron", "0 0 30 2 *"], "never runs"),
    (["--cron", "0 3 * * *", "--every", "1d"], "repeat: give either offset keys or a cron expression, not both"),
    (["--cron", "0 3 * * *", "--rrule", "FREQ=DAILY"], "repeat: give either an rrule or a cron expression, not both"),
    (["--every", "500ms"], "runs would come less than 1 s apart, this database's min_repeat_s"),
])
def test_add_refuses_bad_cron_and_too_frequent_repeats_and_stores_nothing(db_env, couch, args, message):
    result = after("add", "--worker", "w", "--job", "j", *args, env=db_env)
    assert_one_line_error(result, 2)
    assert message in result.stderr
    assert couch.find({"worker": "w"}) == []


def test_next_of_an_ended_or_unknown_task(db_env, couch):
    task_id = add(db_env, "--worker", "w", "--job", "j", "--cron", "@hourly")
    couch.put({**couch.get(task_id), "status": "done"})
    result = after("next", task_id, env=db_env)
    assert result.returncode == 0 and result.stdout == ""
    assert "it has ended (done)" in result.stderr
    assert_one_line_error(after("next", "nope", env=db_env), 1)
    assert_one_line_error(after("next", task_id, "-n", "0", env=db_env), 2)


# ---- next_runs: the worker's rules replayed (pure) ---------------------------------------------

NOW = parse_date("2026-12-04T10:00:00Z")     # a Friday


def doc(**fields):
    base = {"_id": "t", "worker": "w", "date": "2026-12-04T10:00:00Z", "status": "waiting",
            "job": {"name": "j", "arguments": []}, "repeat": {"cron": "0 3 * * 1-5", "tz": "Europe/Lisbon"}}
    return {**base, **fields}


def texts(runs):
    return [format_date(t) for t in runs[0]], runs[1]


def test_next_runs_of_a_new_cron_task_start_at_its_first_match():
    assert texts(next_runs(doc(), NOW, 2)) == (["2026-12-07T03:00:00Z", "2026-12-08T03:00:00Z"], None)


def test_next_runs_apply_jitter_as_the_worker_does():
    from afterd.outcome import jittered
    from afterd.policy import parse_policy

    d = doc(jitter="10m")
    runs, _ = next_runs(d, NOW, 2)
    plain = [parse_date("2026-12-07T03:00:00Z"), parse_date("2026-12-08T03:00:00Z")]
    assert runs == [jittered(p, "t", k, parse_policy(d)) for k, p in enumerate(plain)]
    assert runs != plain


def test_next_runs_of_an_overdue_chain_follow_its_catchup():
    """Scheduled, its occurrence of Monday 30 November never ran (the worker was down)."""
    d = doc(status="scheduled", anchor="2026-11-30T00:00:00Z", occurrence=0, date="2026-11-30T03:00:00Z")
    assert texts(next_runs(d, NOW, 2)) == ([format_date(NOW), "2026-12-07T03:00:00Z"], None)
    all_of_them, _ = next_runs({**d, "catchup": "all"}, NOW, 6)
    assert [format_date(t) for t in all_of_them] == [format_date(NOW)] * 5 + ["2026-12-07T03:00:00Z"]
    none, _ = next_runs({**d, "catchup": "none"}, NOW, 1)
    assert [format_date(t) for t in none] == ["2026-12-07T03:00:00Z"]


def test_next_runs_of_a_paused_task_say_they_follow_a_resume():
    d = doc(status="paused", anchor="2026-12-01T00:00:00Z", occurrence=3, date="2026-12-07T03:00:00Z")
    runs, note = next_runs(d, NOW, 1)
    assert [format_date(t) for t in runs] == ["2026-12-07T03:00:00Z"] and note.startswith("paused")


def test_next_runs_stop_at_count_and_until():
    runs, note = next_runs(doc(repeat={"cron": "0 3 * * *", "count": 2}), NOW, 5)
    assert len(runs) == 2 and "ends it" in note
    runs, note = next_runs(doc(date="2026-12-05", repeat={"cron": "0 3 * * *", "until": "2026-12-04"}), NOW, 5)
    assert runs == [] and "before its first run" in note


def test_next_runs_of_an_extra_run_and_of_a_one_time_task():
    d = doc(status="run", anchor="2026-12-01T00:00:00Z", occurrence=3, date="2026-12-07T03:00:00Z")
    assert texts(next_runs(d, NOW, 2)) == ([format_date(NOW), "2026-12-07T03:00:00Z"], None)
    once = {k: v for k, v in doc(date="2026-12-24T18:00:00Z").items() if k != "repeat"}
    assert texts(next_runs(once, NOW, 3)) == (["2026-12-24T18:00:00Z"], None)


def test_init_writes_the_floor_and_a_worker_keeps_it(env, couch_url, db_name):
    """`after init` with min_repeat_s = 60 (the environment here, after.conf on a server):
    the server refuses a 30 s repeat saying why; a worker started with the default keeps 60."""
    import json

    import requests

    from afterd import service
    from afterd.config import Settings
    from afterd.design import DESIGN_ID

    db_env = {**env, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": db_name, "AFTER_MIN_REPEAT_S": "60"}
    result = after("init", env=db_env)
    assert result.returncode == 0, result.stderr
    assert "tasks may repeat at most once every 60 s (min_repeat_s)" in result.stdout
    design_url = f"{couch_url}/{db_name}/{DESIGN_ID}"
    assert requests.get(design_url, timeout=10).json()["min_repeat_s"] == 60

    task = {"worker": "w", "date": "2026-12-01", "status": "waiting", "job": {"name": "j"}, "repeat": {"s": 30}}
    r = requests.post(f"{couch_url}/{db_name}", data=json.dumps(task), timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 403
    assert r.json()["reason"] == ("repeat: runs would come less than 60 s apart, this database's min_repeat_s: "
                                  "each run writes the task twice")
    refused = after("add", "--worker", "w", "--job", "j", "--every", "30s", env=db_env)
    assert_one_line_error(refused, 2)

    service.connect(Settings(couchdb_url=couch_url, database=db_name))     # min_repeat_s: the default, 1
    assert requests.get(design_url, timeout=10).json()["min_repeat_s"] == 60
