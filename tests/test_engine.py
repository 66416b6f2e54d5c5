"""The worker engine against the real server: a named worker runs its tasks at their date,
exactly once, and loses nothing (issue: the worker engine).

Every worker here is a real `after start NAME` process; every job records its runs by
its own clock (tests/engine_jobs/record.py), so the counts below are the jobs' own.
"""

import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from dateutil.relativedelta import relativedelta

from afterd.couch import Conflict
from afterd.task import format_date, parse_date
from helpers import wait_for
from workers import WorkerProcess, read_runs, starts_per_occurrence

FINAL = ("done", "error", "canceled")


def utcnow():
    return datetime.now(timezone.utc)


def record_task(record_dir, date, worker="manobi", **fields):
    args = {"dir": str(record_dir), **fields.pop("args", {})}
    return {"worker": worker, "date": date if isinstance(date, str) else format_date(date),
            "status": "waiting", "job": {"name": "record", "arguments": args}, **fields}


def post_all(couch, docs):
    """POST the documents; their ids, in the order given (pouchdb answers in its own order)."""
    for doc in docs:
        doc.setdefault("_id", uuid.uuid4().hex)
    results = couch.bulk(docs)
    assert all("rev" in r for r in results), results
    return [d["_id"] for d in docs]


def statuses(couch, ids):
    docs = {d["_id"]: d for d in couch.find({"_id": {"$in": list(ids)}})}
    return {i: docs.get(i, {}).get("status") for i in ids}


def wait_final(couch, ids, timeout_s):
    def all_final():
        found = statuses(couch, ids)
        return all(s in FINAL for s in found.values())
    # Polled every half second: a _find over a thousand ids is real work for the server.
    wait_for(all_final, timeout_s, f"{len(ids)} tasks to end", interval_s=0.5)
    return {d["_id"]: d for d in couch.find({"_id": {"$in": list(ids)}})}


def update(couch, doc_id, **changes):
    """What a user does: read, change, PUT; again on 409 (the worker wrote meanwhile)."""
    for _ in range(50):
        doc = couch.get(doc_id)
        doc.update(changes)
        try:
            return couch.put(doc)
        except Conflict:
            time.sleep(0.05)
    raise AssertionError(f"could not update {doc_id}")


@pytest.fixture
def killed_at_end():
    """killed_at_end(worker) -> worker, killed when the test ends, whatever the outcome."""
    started = []
    yield lambda w: started.append(w) or w
    for w in started:
        w.kill()


@pytest.fixture
def worker(couch_url, db_name, tmp_path, killed_at_end):
    def make(name="manobi", **env):
        return killed_at_end(WorkerProcess(name, couch_url, db_name, tmp_path / "state",
                                           env={f"AFTER_{k.upper()}": str(v) for k, v in env.items()}))
    return make


def test_runs_at_its_millisecond_date_not_before(couch, worker, records):
    w = worker().start()
    date = (utcnow() + timedelta(seconds=2)).replace(microsecond=437000)
    if date - utcnow() < timedelta(seconds=1.2):
        date += timedelta(seconds=1)
    [task_id] = post_all(couch, [record_task(records, date)])
    doc = wait_final(couch, [task_id], 15)[task_id]
    assert doc["status"] == "done", doc
    [start] = [r for r in read_runs(records) if r["event"] == "start"]
    late_s = start["t"] - date.timestamp()
    assert 0 <= late_s < 0.05, f"ran {late_s * 1000:.1f} ms after its date"
    assert doc["runs"] == 1 and doc["result"] == {"started": start["t"]}
    assert parse_date(doc["started_at"]) >= date
    assert w.stop() == 0


def test_overdue_tasks_run_once_at_start_and_other_workers_tasks_are_untouched(couch, worker, records):
    past = utcnow() - timedelta(hours=1)
    ids = post_all(couch, [record_task(records, past - timedelta(minutes=i)) for i in range(20)])
    [other] = post_all(couch, [record_task(records, past, worker="someone_else")])
    other_before = couch.get(other)
    w = worker().start()
    docs = wait_final(couch, ids, 30)
    assert {d["status"] for d in docs.values()} == {"done"}
    assert sorted(starts_per_occurrence(records).values()) == [1] * 20
    assert couch.get(other) == other_before
    assert w.stop() == 0


def test_real_example_runs_once_then_waits_for_the_first_future_occurrence(couch, worker, records):
    seed = record_task(records, "2012-02-27", repeat={"days": 7, "months": 1})
    [task_id] = post_all(couch, [seed])
    worker().start()
    doc = wait_for(lambda: (lambda d: d if d.get("runs") == 1 and d["status"] == "scheduled" else None)(
        couch.get(task_id)), 20, "the real example to run once and be re-armed")
    now = utcnow()
    anchor = datetime(2012, 2, 27, tzinfo=timezone.utc)
    k = 1
    while anchor + relativedelta(months=k, days=7 * k) <= now:
        k += 1
    assert parse_date(doc["date"]) == anchor + relativedelta(months=k, days=7 * k)
    assert doc["last_run"]["status"] == "done" and doc["last_run"]["date"] == "2012-02-27"
    assert sum(starts_per_occurrence(records).values()) == 1


def test_repeat_every_second_until_canceled(couch, worker, records):
    worker().start()
    first = (utcnow() + timedelta(seconds=1)).replace(microsecond=0) + timedelta(seconds=1)
    [task_id] = post_all(couch, [record_task(records, first, repeat={"s": 1})])
    wait_for(lambda: len([r for r in read_runs(records) if r["event"] == "start"]) >= 5, 20,
             "five runs of a task that repeats every second")
    update(couch, task_id, status="cancel")
    wait_for(lambda: couch.get(task_id)["status"] == "canceled", 10, "the task to be canceled")
    runs_at_cancel = len([r for r in read_runs(records) if r["event"] == "start"])
    time.sleep(2.5)  # an observation window: nothing may run after the cancel
    starts = [r["t"] for r in read_runs(records) if r["event"] == "start"]
    assert len(starts) == runs_at_cancel
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(0.9 <= g <= 1.1 for g in gaps), gaps
    dates = [parse_date(r["date"]) for r in read_runs(records) if r["event"] == "start"]
    assert dates == [first + timedelta(seconds=i) for i in range(len(dates))]


def test_cancel_reschedule_and_delete_before_the_date(couch, worker, records):
    worker().start()
    later = utcnow() + timedelta(seconds=30)
    cancel_id, resched_id, delete_id = post_all(couch, [record_task(records, later) for _ in range(3)])
    wait_for(lambda: set(statuses(couch, [cancel_id, resched_id, delete_id]).values()) == {"scheduled"},
             10, "the three tasks to be scheduled")
    update(couch, cancel_id, status="cancel")
    sooner = (utcnow() + timedelta(seconds=2)).replace(microsecond=250000)
    update(couch, resched_id, status="reschedule", date=format_date(sooner))
    couch.delete(delete_id, couch.get(delete_id)["_rev"])
    wait_for(lambda: couch.get(cancel_id)["status"] == "canceled", 10, "cancel")
    doc = wait_final(couch, [resched_id], 15)[resched_id]
    assert doc["status"] == "done"
    runs = [r for r in read_runs(records) if r["event"] == "start"]
    assert [r["task"] for r in runs] == [resched_id]
    assert 0 <= runs[0]["t"] - sooner.timestamp() < 0.1


def test_three_processes_of_one_worker_run_each_task_exactly_once(couch, worker, records):
    processes = [worker().start() for _ in range(3)]
    base = utcnow() + timedelta(seconds=3)
    docs = [record_task(records, base + timedelta(milliseconds=5 * i)) for i in range(1000)]
    ids = post_all(couch, docs)
    final = wait_final(couch, ids, 120)
    assert {d["status"] for d in final.values()} == {"done"}
    counts = starts_per_occurrence(records)
    assert len(counts) == 1000 and set(counts.values()) == {1}
    owners = {d["owner"]["process"] for d in final.values()}
    assert len(owners) >= 1
    for p in processes:
        assert p.alive()


def test_kill_9_in_a_loop_loses_nothing_and_runs_nothing_twice(couch, worker, records):
    rng = random.Random(20261123)
    base = utcnow() + timedelta(seconds=3)
    docs = [record_task(records, base + timedelta(milliseconds=40 * i), args={"sleep_s": 0.15})
            for i in range(500)]
    ids = post_all(couch, docs)
    w = worker()
    w.start()
    kills = []
    for _ in range(20):
        time.sleep(rng.uniform(0.3, 1.0))  # a random moment to kill at
        kills.append(time.time())
        w.kill()
        w.start()
    final = wait_final(couch, ids, 120)
    runs = read_runs(records)
    starts = starts_per_occurrence(records)
    ended = {(r["task"], r["date"]): r["t"] for r in runs if r["event"] == "end"}
    assert max(starts.values()) == 1, "an occurrence ran twice"
    cut = {key for key in starts if key not in ended}

    def ended_just_before_a_kill(occurrence):
        # The job's own "end" line is written before its process records the outcome in
        # the journal; a kill between the two leaves a run whose end nobody can know.
        t = ended.get(occurrence)
        return t is not None and any(-0.1 <= k - t <= 2.0 for k in kills)

    for task_id, doc in final.items():
        occurrence = (task_id, doc["date"])
        if occurrence in cut or (doc["status"] == "error" and ended_just_before_a_kill(occurrence)):
            assert doc["status"] == "error" and doc["error"]["type"] == "Interrupted", doc
        else:
            assert doc["status"] == "done", {k: doc.get(k) for k in ("status", "error", "date", "runs")}
            assert starts[occurrence] == 1, occurrence
    print(f"\n{w.starts} starts, {len(cut)} runs cut by a kill, "
          f"{sum(1 for d in final.values() if d['status'] == 'done')} done")


def _due_over(records, seconds, count, start_in_s):
    base = utcnow() + timedelta(seconds=start_in_s)
    step = seconds / count
    return [record_task(records, base + timedelta(seconds=i * step)) for i in range(count)]


def test_outage_shorter_than_the_lease_runs_on_time_and_writes_everything_after(
        private_couch_server, tmp_path, records, killed_at_end):
    from afterd.couch import Couch

    db = Couch(private_couch_server.url, "tasks")
    db.ensure_database()
    # The story in full, stepped through time, is in test_stepped.py; this is the real thing,
    # shorter: a real server stopped and started, a real worker with a 20 s lease.
    w = killed_at_end(WorkerProcess("manobi", private_couch_server.url, "tasks", tmp_path / "state",
                                    env={"AFTER_LEASE_S": "20", "AFTER_SKEW_MARGIN_S": "2"})).start()
    docs = _due_over(records, seconds=8, count=10, start_in_s=4)
    ids = post_all(db, docs)
    wait_for(lambda: set(statuses(db, ids).values()) == {"scheduled"}, 15, "all scheduled")
    private_couch_server.stop()
    outage_ends = time.time() + 12
    wait_for(lambda: len([r for r in read_runs(records) if r["event"] == "start"]) == 10, 30,
             "every run to start while CouchDB is down")
    time.sleep(max(0.0, outage_ends - time.time()))  # the outage lasts beyond the last run
    private_couch_server.start()
    final = wait_final(db, ids, 60)
    assert {d["status"] for d in final.values()} == {"done"}
    starts = [r for r in read_runs(records) if r["event"] == "start"]
    assert sorted(starts_per_occurrence(records).values()) == [1] * 10
    for r in starts:
        assert r["t"] - parse_date(r["date"]).timestamp() < 0.5, "a run was late during the outage"
    assert w.alive()
    assert "unreachable" in w.log()


def test_outage_longer_than_the_lease_pauses_runs_and_resumes(private_couch_server, tmp_path, records,
                                                              killed_at_end):
    from afterd.couch import Couch

    db = Couch(private_couch_server.url, "tasks")
    db.ensure_database()
    w = killed_at_end(WorkerProcess("manobi", private_couch_server.url, "tasks", tmp_path / "state",
                                    env={"AFTER_LEASE_S": "4", "AFTER_SKEW_MARGIN_S": "1"})).start()
    docs = _due_over(records, seconds=10, count=10, start_in_s=3)
    ids = post_all(db, docs)
    wait_for(lambda: set(statuses(db, ids).values()) == {"scheduled"}, 15, "all scheduled")
    private_couch_server.stop()
    outage_started = time.time()
    time.sleep(9)   # the outage itself (stepped through in test_stepped.py; this is the real one)
    private_couch_server.start()
    outage_ended = time.time()
    final = wait_final(db, ids, 60)
    assert {d["status"] for d in final.values()} == {"done"}
    assert sorted(starts_per_occurrence(records).values()) == [1] * 10
    # Nothing started after the lease could have lapsed and before CouchDB was back.
    lapse = outage_started + 4
    for r in (r for r in read_runs(records) if r["event"] == "start"):
        assert not (lapse < r["t"] < outage_ended), "a run started while the lease had lapsed"
    assert w.alive()


def test_a_notify_socket_nobody_reads_never_stops_the_loop(couch, worker, records, tmp_path):
    # Given a NOTIFY_SOCKET whose owner never reads (a stalled PID 1): a datagram socket
    # queues only net.unix.max_dgram_qlen (10) messages, then a blocking send would hang.
    import socket

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unread:
        unread.bind(path)
        w = worker()
        w.env["NOTIFY_SOCKET"] = path
        w.start()
        # When a task repeats every second (a STATUS change each time, READY before that)
        [task_id] = post_all(couch, [record_task(records, utcnow(), repeat={"seconds": 1})])
        # Then it keeps running well past the ten messages the socket can hold
        wait_for(lambda: len([r for r in read_runs(records) if r["event"] == "start"]) >= 14,
                 60, "14 runs with an unread notify socket")
        # and a cancel is still seen, and SIGTERM still stops the worker within its grace
        update(couch, task_id, status="cancel")
        wait_for(lambda: couch.get(task_id)["status"] == "canceled", 20, "the cancel to be acted on")
        assert w.stop(timeout_s=30) == 0
    assert "sd_notify socket is full" in w.log()
