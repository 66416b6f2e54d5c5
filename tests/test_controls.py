"""The operator's controls and the policies against the real server and a real worker:
pause, resume, run now, retry, catchup, overlap, history and output, and two processes
of one worker running nothing twice."""

from datetime import timedelta

from helpers import wait_for
from test_engine import post_all, record_task, statuses, update, utcnow, worker  # noqa: F401 (worker: fixture)
from test_engine import killed_at_end  # noqa: F401 (a fixture worker uses)
from afterd.task import format_date, parse_date
from workers import read_runs, starts_per_occurrence


def starts(records, task_id=None):
    return [r for r in read_runs(records) if r["event"] == "start" and (task_id is None or r["task"] == task_id)]


def test_pause_holds_a_repeating_task_and_resume_runs_the_missed_ones_once(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow(), repeat={"seconds": 1})])
    wait_for(lambda: len(starts(records)) >= 2, 30, "two runs")
    # When the user pauses it
    update(couch, task_id, status="pause")
    wait_for(lambda: couch.get(task_id)["status"] == "paused", 20, "the worker to say paused")
    held = len(starts(records))
    paused_at = utcnow()
    # Then nothing runs while it is paused (3 occurrences come due meanwhile)
    wait_for(lambda: utcnow() > paused_at + timedelta(seconds=3.5), 10, "three occurrences to pass")
    assert len(starts(records)) == held
    assert couch.get(task_id)["status"] == "paused"
    # When it is resumed: the missed occurrences collapse into one run, then it goes on each second
    resumed_at = utcnow().timestamp()
    update(couch, task_id, status="resume")
    wait_for(lambda: len(starts(records)) >= held + 3, 30, "runs after the resume")
    after = starts(records)[held:]
    assert after[0]["t"] >= resumed_at
    # Each run says which occurrence it is: of those due while paused, one ran at most
    # (by their dates, not by how close the starts came: on a loaded machine a late run
    # and the next on time can start 0.2 s apart).
    missed = [r["date"] for r in after if parse_date(r["date"]).timestamp() < resumed_at]
    assert len(missed) <= 1, f"missed occurrences each ran: {missed}"
    assert max(starts_per_occurrence(records).values()) == 1
    assert w.stop() == 0


def test_run_now_on_a_repeating_task_keeps_its_next_date(couch, worker, records):
    w = worker().start()
    tomorrow = utcnow() + timedelta(days=1)
    [task_id] = post_all(couch, [record_task(records, tomorrow, repeat={"days": 1})])
    wait_for(lambda: couch.get(task_id)["status"] == "scheduled", 20, "the claim")
    before = couch.get(task_id)
    update(couch, task_id, status="run")
    wait_for(lambda: couch.get(task_id).get("runs") == 1 and couch.get(task_id)["status"] == "scheduled",
             30, "the extra run to be recorded")
    after = couch.get(task_id)
    assert len(starts(records, task_id)) == 1
    assert parse_date(after["date"]) == parse_date(before["date"])
    assert after.get("occurrence", 0) == before.get("occurrence", 0)
    assert after["last_run"]["status"] == "done" and "run_now" not in after
    assert w.stop() == 0


def test_run_now_on_a_one_time_task_is_its_run(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow() + timedelta(days=1))])
    wait_for(lambda: couch.get(task_id)["status"] == "scheduled", 20, "the claim")
    update(couch, task_id, status="run")
    wait_for(lambda: couch.get(task_id)["status"] == "done", 30, "the run")
    assert len(starts(records, task_id)) == 1 and couch.get(task_id)["runs"] == 1
    assert w.stop() == 0


def test_a_failing_job_with_three_attempts_runs_three_times_at_growing_intervals(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow(), args={"fail": True},
                                             retry={"attempts": 3, "delay": 1, "backoff": 2, "on": ["error"]})])
    wait_for(lambda: couch.get(task_id)["status"] == "error", 60, "the last attempt to fail")
    runs = [r["t"] for r in starts(records, task_id)]
    assert len(runs) == 3
    first_gap, second_gap = runs[1] - runs[0], runs[2] - runs[1]
    assert first_gap >= 1.0 and second_gap >= 2.0 and second_gap > first_gap
    doc = couch.get(task_id)
    assert [h["attempt"] for h in doc["history"]] == [1, 2, 3]
    assert {h["status"] for h in doc["history"]} == {"error"} and doc["runs"] == 3
    assert w.stop() == 0


def test_on_error_creates_one_follow_up_even_when_the_worker_is_killed_right_after_the_run(
        couch, worker, records):
    w = worker().start()
    follow = {"job": {"name": "record", "arguments": {"dir": str(records)}}}
    [task_id] = post_all(couch, [record_task(records, utcnow(), args={"fail": True, "sleep_s": 0.3},
                                             on_error=follow)])
    # Killed the moment the job has failed: its outcome may or may not be written yet
    wait_for(lambda: any(r["event"] == "end" and r["task"] == task_id for r in read_runs(records)), 30,
             "the failing run to end")
    w.kill()
    w.start()
    wait_for(lambda: couch.get(task_id)["status"] == "error", 30, "the outcome after the restart")
    children = lambda: couch.find({"parent.id": task_id})  # noqa: E731
    wait_for(lambda: [c for c in children() if c["status"] == "done"], 30, "the follow-up to run")
    [child] = children()
    # (killed before the child recorded its result, the run ends Interrupted: an error too)
    assert child["parent"]["status"] == "error"
    assert any(why in child["parent"]["error"] for why in ("failing on purpose", "Interrupted"))
    assert len(starts(records, task_id)) == 1 and len(starts(records, child["_id"])) == 1
    assert w.stop() == 0


def test_jitter_is_written_into_the_date_and_is_the_same_for_every_process(couch, worker, records):
    from afterd.outcome import jittered
    from afterd.task import parse_task

    w = worker().start()
    date = (utcnow() + timedelta(days=1)).replace(microsecond=0)
    [task_id] = post_all(couch, [record_task(records, date, repeat={"days": 1}, jitter="1h")])
    wait_for(lambda: couch.get(task_id)["status"] == "scheduled", 20, "the claim")
    doc = couch.get(task_id)
    assert parse_date(doc["anchor"]) == date
    assert date <= parse_date(doc["date"]) < date + timedelta(hours=1)
    task = parse_task({**doc, "date": doc["anchor"]})
    assert parse_date(doc["date"]) == jittered(date, task_id, 0, task.policy)   # what any process computes
    assert w.stop() == 0


def test_resume_with_catchup_none_runs_nothing_missed(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow(), repeat={"seconds": 2}, catchup="none")])
    wait_for(lambda: len(starts(records)) >= 1, 30, "a first run")
    update(couch, task_id, status="pause")
    wait_for(lambda: couch.get(task_id)["status"] == "paused", 20, "paused")
    held = len(starts(records))
    paused_at = utcnow()
    wait_for(lambda: utcnow() > paused_at + timedelta(seconds=5), 10, "occurrences to pass while paused")
    resumed_at = utcnow()
    update(couch, task_id, status="resume")
    # Then the worker moves it to its next future occurrence, and nothing missed runs
    wait_for(lambda: couch.get(task_id)["status"] == "scheduled"
             and parse_date(couch.get(task_id)["date"]) > resumed_at - timedelta(seconds=1), 20, "the next date")
    next_date = parse_date(couch.get(task_id)["date"])
    wait_for(lambda: len(starts(records)) > held, 20, "the next occurrence to run")
    first = starts(records)[held]
    assert first["t"] >= next_date.timestamp() - 0.01, "a missed occurrence ran"
    assert w.stop() == 0


def test_history_stays_at_its_limit(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow(), repeat={"seconds": 1}, history_limit=3)])
    wait_for(lambda: (couch.get(task_id).get("runs") or 0) >= 5, 30, "five runs")
    doc = couch.get(task_id)
    assert len(doc["history"]) == 3
    assert [h["status"] for h in doc["history"]] == ["done"] * 3
    occurrences = [parse_date(h["occurrence"]) for h in doc["history"]]
    assert occurrences == sorted(occurrences) and len(set(occurrences)) == 3   # the latest three, in order
    assert w.stop() == 0


# ---- overlap: a repeat whose run outlasts its period (a 3 s job) -----------------------------------

def runs_of(records, task_id):
    """[(start record, end record or None)] of the task, in start order."""
    records_ = read_runs(records)
    ends = {(r["date"], r.get("run")): r for r in records_ if r["event"] == "end" and r["task"] == task_id}
    return [(s, ends.get((s["date"], s.get("run")))) for s in records_
            if s["event"] == "start" and s["task"] == task_id]


def test_overlap_skip_drops_the_occurrences_that_came_due_during_the_run(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow() + timedelta(seconds=1), repeat={"seconds": 1},
                                             overlap="skip", args={"sleep_s": 3})])
    wait_for(lambda: len([e for _, e in runs_of(records, task_id) if e]) >= 3, 60, "three runs to end")
    runs = runs_of(records, task_id)[:3]
    for (before, end), (after, _) in zip(runs, runs[1:]):
        # Then no occurrence that came due during a run ran: the next is the first after it
        assert parse_date(after["date"]).timestamp() > end["t"] - 0.01, runs
        assert 3.0 <= after["t"] - before["t"] < 6.0, [s["t"] for s, _ in runs]
    # about one run per 3 s (3 s of job, then the next whole second), never one per second
    assert runs[2][0]["t"] - runs[0][0]["t"] >= 6.0
    assert w.stop() == 0


def test_overlap_wait_runs_what_came_due_during_the_run_at_once(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow() + timedelta(seconds=1), repeat={"seconds": 1},
                                             args={"sleep_s": 3})])   # overlap "wait", catchup "one": defaults
    wait_for(lambda: len([e for _, e in runs_of(records, task_id) if e]) >= 3, 60, "three runs to end")
    runs = runs_of(records, task_id)[:3]
    for (before, end), (after, _) in zip(runs, runs[1:]):
        # Then the next run is an occurrence that came due while the previous one ran (the
        # latest of them: catchup one), and it starts as soon as that run ended
        assert parse_date(after["date"]).timestamp() <= end["t"], runs
        assert after["t"] - end["t"] < 1.5, runs
    dates = [parse_date(s["date"]) for s, _ in runs]
    assert dates == sorted(set(dates))   # each occurrence ran once, in order
    assert w.stop() == 0


def test_overlap_replace_cuts_each_run_at_the_next_occurrence(couch, worker, records):
    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow() + timedelta(seconds=1), repeat={"seconds": 2},
                                             overlap="replace", args={"sleep_s": 3})])
    wait_for(lambda: len(couch.get(task_id).get("history") or []) >= 2, 60, "two runs recorded")
    doc = couch.get(task_id)
    # Then each run was canceled when the next occurrence came due, and says so
    assert [h["status"] for h in doc["history"][:2]] == ["replaced", "replaced"], doc["history"]
    assert all("overlap replace" in h["error"] for h in doc["history"][:2])
    assert doc["status"] in ("scheduled", "running")   # the chain goes on
    runs = runs_of(records, task_id)
    assert all(end is None for _, end in runs[:2]), "a run was not cut"   # the 3 s job never ended
    starts_ = [s["t"] for s, _ in runs[:3]]
    assert all(1.5 <= b - a < 3.0 for a, b in zip(starts_, starts_[1:])), starts_   # one per 2 s
    for h in doc["history"][:2]:
        assert 1.5 <= h["duration_s"] < 3.0, h    # cut at the next occurrence, well before 3 s
    assert w.stop() == 0


# ---- output: kept as an attachment of the task, named in the history -----------------------------

def test_a_runs_output_is_kept_with_its_history_entry_and_survives_every_later_write(couch, couch_url, worker,
                                                                                    records):
    import os
    import subprocess
    import sys

    from afterd.outputs import output_names, read_output

    w = worker(lease_s=2, skew_margin_s=0.5).start()
    tomorrow = utcnow() + timedelta(days=1)
    [task_id] = post_all(couch, [record_task(records, tomorrow, repeat={"days": 1}, args={"say": "hello"},
                                             history_limit=2)])
    wait_for(lambda: couch.get(task_id)["status"] == "scheduled", 20, "the claim")
    update(couch, task_id, status="run")
    wait_for(lambda: couch.get(task_id).get("runs") == 1 and couch.get(task_id)["status"] == "scheduled",
             30, "the extra run")
    doc = couch.get(task_id)
    # Then its history entry names the attachment that keeps what the job wrote, both streams
    assert doc["history"][-1]["output_ref"] == "output/1" and output_names(doc) == ["output/1"]
    assert read_output(couch, task_id, doc["history"][-1]) == "hello out 1\nhello err 1\n"
    assert "hello out 1" in w.log() and "hello err 1" in w.log()   # the whole output: the worker's log
    # and `after history ID --output` shows it under the run's row
    shown = subprocess.run([sys.executable, "-m", "afterd", "history", task_id, "--output"],
                           env={**os.environ, "AFTER_CONFIG": os.devnull, "AFTER_COUCHDB_URL": couch_url,
                                "AFTER_DATABASE": couch.database}, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "--- output of the run started" in shown.stdout and "hello out 1\nhello err 1" in shown.stdout
    # When the user reschedules it, and another process of the worker takes it over, and
    # the user cancels it: the output is still there
    update(couch, task_id, status="reschedule", date=format_date(tomorrow + timedelta(hours=1)))
    wait_for(lambda: couch.get(task_id)["status"] == "scheduled", 20, "the re-arm")
    other = worker(lease_s=2, skew_margin_s=0.5).start()
    first = couch.get(task_id)["owner"]["process"]
    assert w.stop() == 0
    wait_for(lambda: couch.get(task_id)["owner"]["process"] != first, 30, "the other process to claim it")
    update(couch, task_id, status="cancel")
    wait_for(lambda: couch.get(task_id)["status"] == "canceled", 20, "the cancel")
    assert read_output(couch, task_id, "output/1") == "hello out 1\nhello err 1\n"
    assert other.stop() == 0


def test_outputs_of_runs_that_left_the_history_are_dropped(couch, worker, records):
    from afterd.outputs import output_names

    w = worker().start()
    [task_id] = post_all(couch, [record_task(records, utcnow(), repeat={"seconds": 1}, args={"say": "hi"},
                                             history_limit=2)])
    wait_for(lambda: (couch.get(task_id).get("runs") or 0) >= 4, 30, "four runs")
    doc = couch.get(task_id)
    assert output_names(doc) == [h["output_ref"] for h in doc["history"]]   # the last two, no more
    assert w.stop() == 0


# ---- two processes of one worker: nothing runs twice ---------------------------------------------

def test_two_processes_of_one_worker_run_each_retry_attempt_occurrence_and_run_now_once(couch, worker, records):
    from collections import Counter

    processes = [worker().start() for _ in range(2)]
    soon = utcnow() + timedelta(seconds=2)
    failing = post_all(couch, [record_task(records, soon, args={"fail": True},
                                           retry={"attempts": 3, "delay": 0.5, "backoff": 2, "on": ["error"]})
                               for _ in range(20)])
    repeating = post_all(couch, [record_task(records, soon, repeat={"seconds": 2}) for _ in range(10)])
    # (a) every failing task: three attempts, then error
    wait_for(lambda: set(statuses(couch, failing).values()) == {"error"}, 90, "the last attempts to fail")
    # (b) each repeating task asked to run now, once it has run an occurrence (some while
    # their next occurrence runs: all ten come due at the same instant)
    wait_for(lambda: all((couch.get(t).get("runs") or 0) >= 1 for t in repeating), 60, "a first occurrence each")
    for task_id in repeating:
        update(couch, task_id, status="run")
    extra = lambda: {s["task"] for s in starts(records) if "@now:" in (s.get("run") or "")}  # noqa: E731
    wait_for(lambda: extra() >= set(repeating), 60, "every run now to start")
    for p in processes:
        assert p.stop() == 0
    per_run = Counter(s["run"] for s in starts(records))
    twice = {run: n for run, n in per_run.items() if n > 1}
    assert not twice, f"ran more than once: {twice}"
    for task_id in failing:
        assert sorted(r.rsplit("#", 1)[1] for r in per_run if r.startswith(task_id + "@")) == ["0", "1", "2"]
        assert [h["attempt"] for h in couch.get(task_id)["history"]] == [1, 2, 3]
    for task_id in repeating:
        assert any(r.startswith(task_id + "@now:") for r in per_run)
        occurrences = [r for r in per_run if r.startswith(task_id + "@") and "@now:" not in r]
        assert occurrences   # and each ran once (above)
    owners = {couch.get(t)["owner"]["process"] for t in failing + repeating}
    assert owners, owners
