"""Jobs through a real worker and the real server (issue: jobs, "Done when").

Each test starts a real `after start NAME` process on a jobs folder of its own,
POSTs tasks to CouchDB and checks the task documents a user would GET. The jobs
are written into that folder here; tests/engine_jobs/record.py is copied in to
record, by the job's own clock, when each run started and ended.
"""

import os
import shutil
import signal
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from afterd.task import format_date, parse_date
from helpers import wait_for
from test_engine import post_all, record_task, update, wait_final
from workers import ENGINE_JOBS, WorkerProcess, read_runs

ON_TIME_S = 0.5          # a run "on time" on a loaded 2-core machine (a stuck slot: 28 s)
RELOAD_AFTER_S = 1.0     # the contract: a change counts for runs starting 1 s after it


def utcnow():
    return datetime.now(timezone.utc)


def job_task(job, date=None, worker="manobi", arguments=None, **fields):
    date = utcnow() if date is None else date
    return {"worker": worker, "date": format_date(date), "status": "waiting",
            "job": {"name": job, "arguments": {} if arguments is None else arguments}, **fields}


def write_job(jobs_dir, name, source, mode=0o644):
    """Write a job file in place, as an editor saving over it would."""
    path = jobs_dir / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    os.chmod(path, mode)
    return path


@pytest.fixture
def jobs_dir(tmp_path):
    path = tmp_path / "jobs"
    path.mkdir(mode=0o755)
    shutil.copy(ENGINE_JOBS / "record.py", path / "record.py")
    return path


@pytest.fixture
def worker(couch_url, db_name, tmp_path, jobs_dir):
    started = []

    def make(name="manobi", **env):
        w = WorkerProcess(name, couch_url, db_name, tmp_path / "state", jobs_dir=jobs_dir,
                          env={f"AFTER_{k.upper()}": str(v) for k, v in env.items()})
        started.append(w)
        return w.start()
    yield make
    for w in started:
        w.kill()


def final(couch, task_id, timeout_s=20):
    return wait_final(couch, [task_id], timeout_s)[task_id]


def starts_by_task(records):
    return {r["task"]: r for r in read_runs(records) if r["event"] == "start"}


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


MISBEHAVE = """
    import ctypes, os, time

    def run(task):
        how = task.arguments["how"]
        if how == "raise":
            raise ValueError("bad input on purpose")
        if how == "exit":
            os._exit(3)
        if how == "segv":
            ctypes.string_at(0)          # a real segmentation fault, not a signal sent
        if how == "sleep":
            time.sleep(30)
        if how == "alloc":
            hog = []
            while True:
                hog.append(bytearray(16 * 1024 * 1024))
"""

MEMORY_LIMIT_MB = 300
# how the job misbehaves -> (extra task fields, error type, error message)
FAILURES = {
    "raise": ({}, "ValueError", "bad input on purpose"),
    "exit": ({}, "Exited", "exited with code 3"),
    "segv": ({}, "Killed", "killed by signal SIGSEGV"),
    "sleep": ({"timeout": 1}, "Timeout", "timed out after 1 s"),
    "alloc": ({}, "MemoryError", f"ran out of memory (limit {MEMORY_LIMIT_MB * 1024 * 1024} bytes)"),
}


def test_each_way_a_job_can_fail_ends_only_its_task_and_the_next_runs_on_time(
        couch, worker, jobs_dir, records):
    # Given one slot, so each next task is queued behind the failing one
    write_job(jobs_dir, "misbehave", MISBEHAVE)
    w = worker(concurrency=1, memory_limit_mb=MEMORY_LIMIT_MB)
    # When each kind of failure is followed 1.5 s later by a task that records its start
    base = utcnow() + timedelta(seconds=3)
    docs, followers = [], []
    for i, (how, (fields, _, _)) in enumerate(FAILURES.items()):
        at = base + timedelta(seconds=2 * i)
        docs.append(job_task("misbehave", at, arguments={"how": how}, _id=f"fail-{how}", **fields))
        followers.append(record_task(records, at + timedelta(seconds=1.5), _id=f"behind-{how}"))
    post_all(couch, docs + followers)
    # (ids named here: _bulk_docs on pouchdb-server does not answer in request order)
    failing_ids = [d["_id"] for d in docs]
    follower_ids = [d["_id"] for d in followers]
    done = wait_final(couch, failing_ids + follower_ids, 40)
    # Then each failing task is an error saying how it ended
    for task_id, (how, (_, kind, message)) in zip(failing_ids, FAILURES.items()):
        doc = done[task_id]
        assert doc["status"] == "error", (how, doc)
        assert (doc["error"]["type"], doc["error"]["message"]) == (kind, message), (how, doc["error"])
        assert "result" not in doc and "running" not in doc
    assert "misbehave.py" in done[failing_ids[0]]["error"]["traceback"]
    timed_out = done[failing_ids[list(FAILURES).index("sleep")]]
    ran_s = (parse_date(timed_out["finished_at"]) - parse_date(timed_out["started_at"])).total_seconds()
    assert 1.0 <= ran_s < 3.0, ran_s
    # and the task queued behind each one still ran, on time
    starts = starts_by_task(records)
    assert {done[i]["status"] for i in follower_ids} == {"done"}
    late_s = {how: round(starts[i]["t"] - parse_date(done[i]["date"]).timestamp(), 3)
              for how, i in zip(FAILURES, follower_ids)}
    ran = {how: (done[f"fail-{how}"]["started_at"], done[f"fail-{how}"]["finished_at"]) for how in FAILURES}
    assert all(0 <= s < ON_TIME_S for s in late_s.values()), f"seconds late behind each: {late_s}; {ran}"
    # all in the one worker process, which said why each failed
    assert w.alive()
    assert {d["owner"]["pid"] for d in done.values()} == {w.proc.pid}
    assert "killed by signal SIGSEGV" in w.log() and "timed out after 1 s" in w.log()


def test_cancel_of_a_running_task_kills_its_job_within_the_grace(couch, worker, jobs_dir, tmp_path):
    # Given a job that ignores SIGTERM and would sleep 30 s, and a kill grace of 1 s
    grace_s = 1.0
    pid_file = tmp_path / "job.pid"
    write_job(jobs_dir, "stubborn", f"""
        import os, signal, time
        def run(task):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)   # only the SIGKILL after the grace will do
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(30)
            return "slept"
    """)
    worker(kill_grace_s=grace_s)
    [task_id] = post_all(couch, [job_task("stubborn")])
    wait_for(lambda: couch.get(task_id)["status"] == "running" and pid_file.exists()
             and pid_file.read_text(), 15, "the job to be running")
    job_pid = int(pid_file.read_text())
    # When the user sets status cancel on the current revision
    canceled_at = time.monotonic()
    update(couch, task_id, status="cancel")
    # Then the job's process is gone within the grace, and the task ends canceled
    wait_for(lambda: not pid_alive(job_pid), grace_s + 4, "the job's process to be killed")
    gone_after_s = time.monotonic() - canceled_at
    assert gone_after_s >= grace_s * 0.8, "killed before its grace: SIGTERM was not tried first"
    doc = final(couch, task_id, 10)
    assert doc["status"] == "canceled", doc
    assert doc["runs"] == 1 and "result" not in doc and "running" not in doc


def test_edits_additions_and_syntax_errors_take_effect_without_a_restart(couch, worker, jobs_dir):
    write_job(jobs_dir, "version", "def run(task):\n    return {'version': 1}\n")
    w = worker(concurrency=2)
    pid = w.proc.pid

    def run_now(*jobs):
        docs = [job_task(job, _id=f"{job}-{uuid.uuid4().hex[:8]}") for job in jobs]
        post_all(couch, docs)
        ids = [d["_id"] for d in docs]
        docs = wait_final(couch, ids, 20)
        return [docs[i] for i in ids]

    [first] = run_now("version")
    assert (first["status"], first["result"]) == ("done", {"version": 1})
    # Edit a job file, wait 1 s, run: the new code
    write_job(jobs_dir, "version", "def run(task):\n    return {'version': 2}\n")
    time.sleep(RELOAD_AFTER_S)
    [edited] = run_now("version")
    assert (edited["status"], edited.get("result")) == ("done", {"version": 2}), edited
    # Add a new job file: it runs
    write_job(jobs_dir, "added", "def run(task):\n    return 'added'\n")
    time.sleep(RELOAD_AFTER_S)
    [added] = run_now("added")
    assert (added["status"], added.get("result")) == ("done", "added"), added
    # Break its syntax: that job's runs fail with the syntax error, others keep running
    write_job(jobs_dir, "added", "def run(task)\n    return 'added'\n")
    time.sleep(RELOAD_AFTER_S)
    broken, other = run_now("added", "version")
    assert broken["status"] == "error", broken
    assert broken["error"]["type"] == "SyntaxError"
    assert broken["error"]["message"].endswith(f"({jobs_dir / 'added.py'}, line 1)"), broken["error"]
    assert (other["status"], other.get("result")) == ("done", {"version": 2}), other
    # SIGHUP (systemctl reload) forces a reload, logged, in the same process
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "reload requested" in w.log(), 10, f"a logged reload after SIGHUP:\n{w.log_tail()}")
    [after_hup] = run_now("version")
    assert after_hup["result"] == {"version": 2}
    # The worker's process never changed
    assert w.alive() and w.proc.pid == pid and w.starts == 1
    assert {d["owner"]["pid"] for d in (first, edited, added, broken, other, after_hup)} == {pid}
    assert "jobs reloaded" in w.log()


def test_a_world_writable_job_file_is_refused_with_a_clear_error(couch, worker, jobs_dir):
    loose = write_job(jobs_dir, "loose", "def run(task):\n    return 'ran'\n", mode=0o666)
    w = worker()
    [task_id] = post_all(couch, [job_task("loose")])
    doc = final(couch, task_id)
    assert doc["status"] == "error" and "result" not in doc, doc
    assert doc["error"]["type"] == "JobRefused"
    assert doc["error"]["message"] == f"job file {loose} is world-writable: refusing to run it"
    assert "world-writable: refusing to run it" in w.log()


def test_a_job_that_does_not_exist_is_an_error_saying_so(couch, worker, jobs_dir):
    worker()
    [task_id] = post_all(couch, [job_task("no_such_job")])
    doc = final(couch, task_id)
    assert doc["status"] == "error", doc
    assert doc["error"]["type"] == "JobNotFound"
    assert doc["error"]["message"].startswith(f"no job named 'no_such_job' in {jobs_dir}"), doc["error"]


def test_task_logger_lines_reach_the_worker_log_tagged_with_the_task(couch, worker, jobs_dir):
    write_job(jobs_dir, "chatty", """
        def run(task):
            task.logger.info("billed %d customers", len(task.arguments["customers"]))
            return "logged"
    """)
    w = worker()
    [task_id] = post_all(couch, [job_task("chatty", arguments={"customers": ["a", "b", "c"]})])
    assert final(couch, task_id)["status"] == "done"
    line = f"job chatty task {task_id}: INFO billed 3 customers"
    wait_for(lambda: line in w.log(), 5, f"{line!r} in the worker's log:\n{w.log_tail()}")


def test_200_tasks_due_in_one_second_run_4_at_a_time_in_date_order(couch, worker, records):
    # Given a worker with 4 slots and 200 tasks due within the same second
    w = worker(concurrency=4)
    base = utcnow() + timedelta(seconds=6)   # time to claim all 200 before the first is due
    docs = [record_task(records, base + timedelta(milliseconds=4 * i), args={"sleep_s": 0.04})
            for i in range(200)]
    ids = post_all(couch, docs)
    done = wait_final(couch, ids, 90)
    # Then all ran
    assert {d["status"] for d in done.values()} == {"done"}, [
        d.get("error") for d in done.values() if d["status"] != "done"][:3]
    runs = read_runs(records)
    assert sorted(r["task"] for r in runs if r["event"] == "start") == sorted(ids)
    # never more than 4 at once, by the jobs' own start and end records
    level = peak = 0
    for _, step in sorted((r["t"], 1 if r["event"] == "start" else -1) for r in runs):
        level += step
        peak = max(peak, level)
    assert peak == 4, f"at most {peak} jobs ran at once with concurrency=4"
    # in date order, by the start times the worker reported
    by_date = sorted(done.values(), key=lambda d: parse_date(d["date"]))
    started = [parse_date(d["started_at"]) for d in by_date]
    assert started == sorted(started), "a later task started before an earlier one"
    # and the wait for a slot is reported in each document
    assert all(isinstance(d["queued_ms"], (int, float)) and d["queued_ms"] >= 0 for d in by_date)
    last = by_date[-1]
    waited_ms = (parse_date(last["started_at"]) - parse_date(last["date"])).total_seconds() * 1000
    assert last["queued_ms"] > 500, last["queued_ms"]   # 200 runs of 40 ms, 4 at a time
    # queued_ms is the wait for a slot: part of the time from date to start, never more
    assert last["queued_ms"] <= waited_ms + 5, (last["queued_ms"], waited_ms)
    assert w.alive()


@pytest.mark.parametrize("text, expected", [("300", 300 * 1024 * 1024), ("none", None), ("", None)])
def test_memory_limit_setting_from_the_environment(text, expected):
    from afterd.config import load_settings

    settings = load_settings(env={"AFTER_CONFIG": os.devnull, "AFTER_MEMORY_LIMIT_MB": text})
    assert settings.memory_limit_bytes == expected


@pytest.mark.parametrize("text", ["0", "1.5", "lots"])
def test_a_bad_memory_limit_is_a_one_line_error(text):
    from afterd.config import ConfigError, load_settings

    with pytest.raises(ConfigError) as refused:
        load_settings(env={"AFTER_CONFIG": os.devnull, "AFTER_MEMORY_LIMIT_MB": text})
    assert str(refused.value).startswith("AFTER_MEMORY_LIMIT_MB: memory_limit_mb must be a whole number")
    assert "\n" not in str(refused.value)
