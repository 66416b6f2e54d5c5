"""kill -9 in a loop: nothing lost, nothing run twice, every cut run says Interrupted.

The worker is killed (SIGKILL, its zygote and children with it, as systemd's
KillMode=control-group does) at random moments while tasks come due, and restarted
each time. The jobs' own records (record.py appends a "start" line as its first act
and an "end" line as its last) are the ground truth for how often each occurrence ran.
"""

import random
import time
from datetime import datetime, timedelta, timezone

import pytest

from helpers import wait_for
from test_engine import post_all, record_task, wait_final
from workers import read_runs, starts_per_occurrence


def utcnow():
    return datetime.now(timezone.utc)


def crash_loop(couch, couch_url, db_name, spawn, records, *, tasks, span_s, kills, seed):
    rng = random.Random(seed)
    base = utcnow() + timedelta(seconds=4)
    step_s = span_s / tasks
    docs = [record_task(records, base + timedelta(seconds=i * step_s), args={"sleep_s": 0.1})
            for i in range(tasks)]
    ids = post_all(couch, docs)
    last_due_s = base.timestamp() + span_s
    # 8 at a time, so the backlog left by each restart clears between kills.
    w = spawn("manobi", couch_url, db_name, after_concurrency=8)
    w.start()
    killed = 0
    began = time.monotonic()
    # Kill until the whole span is covered and at least `kills` times.
    while killed < kills or time.time() < last_due_s:
        time.sleep(rng.uniform(0.1, 1.2))   # a random moment after READY
        w.kill()
        killed += 1
        w.start(timeout_s=60)
    final = wait_final(couch, ids, 240)
    elapsed_s = time.monotonic() - began
    assert w.alive()

    runs = read_runs(records)
    starts = starts_per_occurrence(records)
    ended = {(r["task"], r["date"]) for r in runs if r["event"] == "end"}
    duplicates = {k: n for k, n in starts.items() if n > 1}
    cut = {k for k in starts if k not in ended}
    interrupted = {i for i, d in final.items() if d["status"] == "error"
                   and d["error"]["type"] == "Interrupted"}
    # Two windows a kill can hit without breaking at-most-once: after the child journaled
    # its start but before record.py's first line (Interrupted, no start record), and after
    # record.py's last line but before the child journaled its result (Interrupted, ended).
    no_record = {i for i in interrupted if (i, final[i]["date"]) not in starts}
    ended_but_interrupted = {i for i in interrupted if (i, final[i]["date"]) in ended}
    print(f"\ncrash loop: {tasks} tasks over {span_s}s, {killed} kills, {len(cut)} runs cut, "
          f"{len(duplicates)} duplicates, {len(interrupted)} Interrupted "
          f"({len(no_record)} before the job's first line, {len(ended_but_interrupted)} after its last), "
          f"{elapsed_s:.0f}s")

    assert not duplicates, f"occurrences that ran twice: {duplicates}"
    assert killed >= kills
    for task_id, doc in final.items():
        occurrence = (task_id, doc["date"])
        if occurrence in cut:
            assert doc["status"] == "error" and doc["error"]["type"] == "Interrupted", doc
        elif task_id not in interrupted:
            assert doc["status"] == "done", {k: doc.get(k) for k in ("status", "error", "date", "runs")}
            assert starts[occurrence] == 1 and doc["runs"] == 1, occurrence
    # Those windows are a few microseconds wide: a kill lands in them rarely, never often.
    assert len(no_record) + len(ended_but_interrupted) <= killed // 3, (no_record, ended_but_interrupted)
    assert len(cut) > 0, "no kill cut a run: the test did not test what it says"


def test_crash_loop_1000_tasks_30_kills(couch, couch_url, db_name, spawn, records):
    crash_loop(couch, couch_url, db_name, spawn, records, tasks=1000, span_s=60, kills=30, seed=8_1000)


@pytest.mark.soak
def test_crash_loop_soak_5000_tasks_150_kills(couch, couch_url, db_name, spawn, records):
    crash_loop(couch, couch_url, db_name, spawn, records, tasks=5000, span_s=300, kills=150, seed=8_5000)


def test_a_cut_run_of_a_task_with_retry_runs_again_and_counts_the_attempt(couch, couch_url, db_name, spawn, records):
    date = utcnow() + timedelta(seconds=2)
    [task_id] = post_all(couch, [record_task(records, date, retry=2, args={"sleep_s": 3})])
    w = spawn("manobi", couch_url, db_name).start()
    wait_for(lambda: len(read_runs(records)) == 1, 20, "the first run to start")
    w.kill()
    w.start()
    # The second attempt is claimed with the attempt counted before it starts.
    wait_for(lambda: couch.get(task_id).get("attempts") == 1, 20, "attempts == 1 on the document")
    doc = wait_final(couch, [task_id], 30)[task_id]
    starts = [r for r in read_runs(records) if r["event"] == "start"]
    assert len(starts) == 2 and doc["status"] == "done" and doc["runs"] == 1, (starts, doc)
    assert "retrying (1 of 2)" in w.log()


def test_retries_are_bounded_then_the_task_ends_interrupted(couch, couch_url, db_name, spawn, records):
    date = utcnow() + timedelta(seconds=2)
    [task_id] = post_all(couch, [record_task(records, date, retry=1, args={"sleep_s": 30})])
    w = spawn("manobi", couch_url, db_name).start()
    for attempt in (1, 2):
        wait_for(lambda: len([r for r in read_runs(records) if r["event"] == "start"]) == attempt, 30,
                 f"attempt {attempt} to start")
        w.kill()
        w.start()
    doc = wait_final(couch, [task_id], 30)[task_id]
    assert doc["status"] == "error" and doc["error"]["type"] == "Interrupted", doc
    assert len([r for r in read_runs(records) if r["event"] == "start"]) == 2
