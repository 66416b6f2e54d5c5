"""`after explain ID` against a real server and a real worker: a future date on a live
process, a job file that cannot be loaded (reported by the worker's heartbeat), a paused
task, a stopped worker, a worker that never ran."""

import os
import shutil
import subprocess
import sys
from datetime import timedelta

import pytest

from helpers import wait_for
from test_engine import post_all, record_task, update, utcnow, worker  # noqa: F401 (worker: fixture)
from test_engine import killed_at_end  # noqa: F401 (a fixture worker uses)
from workers import ENGINE_JOBS


@pytest.fixture
def jobs_dir(tmp_path):
    folder = tmp_path / "jobs"
    folder.mkdir(mode=0o755)
    shutil.copy(ENGINE_JOBS / "record.py", folder / "record.py")
    (folder / "generate_billing.py").write_text("# bills\n" * 11 + "def run(task)\n    return 1\n")
    return folder


def explain(couch_url, db_name, task_id, jobs_dir):
    env = {**os.environ, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": db_name,
           "AFTER_JOBS_DIR": str(jobs_dir), "AFTER_CONFIG": os.devnull}
    result = subprocess.run([sys.executable, "-m", "afterd", "explain", task_id], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_explain_names_the_reason(couch, couch_url, db_name, worker, records, jobs_dir):
    w = worker(jobs_dir=jobs_dir, lease_s=20).start()
    in_an_hour = utcnow() + timedelta(hours=1)
    future, broken, paused = post_all(couch, [
        record_task(records, in_an_hour),
        {**record_task(records, in_an_hour), "job": {"name": "generate_billing", "arguments": ["1234"]}},
        record_task(records, in_an_hour)])
    orphan, = post_all(couch, [record_task(records, in_an_hour, worker="billing")])
    ten_ago = (utcnow() - timedelta(minutes=10)).replace(second=0, microsecond=0)
    skipping, = post_all(couch, [record_task(records, ten_ago, repeat={"hours": 1}, catchup="none")])
    wait_for(lambda: all(couch.get(t)["status"] == "scheduled" for t in (future, broken, paused)), 20, "claims")
    update(couch, paused, status="pause")
    wait_for(lambda: couch.get(paused)["status"] == "paused", 20, "the worker to say paused")
    [beat] = [d for d in couch.docs_with_prefix("after:process:manobi:")]
    process, host = beat["_id"][len("after:process:"):], beat["host"]

    # A future date, on a live process
    said = explain(couch_url, db_name, future, jobs_dir)
    assert f"Runs next at {in_an_hour:%Y-%m-%d %H:%M}" in said
    assert f"(in 59 min" in said or "(in 1 h)" in said
    assert f"on process {process}, alive (lease renewed" in said

    # A job whose file cannot be loaded: the worker's heartbeat says so, and this machine's folder too
    said = explain(couch_url, db_name, broken, jobs_dir)
    assert (f"Job `generate_billing` cannot be loaded on {host}: syntax error, line 12: expected ':' "
            "(reported by its heartbeat).") in said, said
    assert "In this machine's jobs folder, job `generate_billing` cannot run: syntax error, line 12" in said

    # Fixed while the worker runs: its next heartbeat says so (the folder is checked on every change)
    (jobs_dir / "generate_billing.py").write_text("def run(task):\n    return 1\n")
    wait_for(lambda: "jobs_broken" not in couch.get(beat["_id"]).get("metrics", {}), 30,
             "the heartbeat to drop the fixed job")
    assert "cannot be loaded" not in explain(couch_url, db_name, broken, jobs_dir)

    # Missed occurrences the worker skipped (catchup none): its note says which, when, why
    wait_for(lambda: "skipped" in couch.get(skipping), 20, "the skip")
    said = explain(couch_url, db_name, skipping, jobs_dir)
    assert f"The {ten_ago:%Y-%m-%d %H:%M:%S} UTC occurrence was skipped at " in said
    assert ": catchup none after 10 min" in said and "Runs next at" in said

    # A paused task
    said = explain(couch_url, db_name, paused, jobs_dir)
    assert "Paused since " in said and "by a user: no process arms it until it is resumed" in said

    # A worker name no process ever ran
    said = explain(couch_url, db_name, orphan, jobs_dir)
    assert "No process of worker `billing` has a heartbeat in this database" in said

    # When the worker stops, its tasks say so
    assert w.stop() == 0
    said = explain(couch_url, db_name, future, jobs_dir)
    assert f"Its process {process} (on {host}) stopped " in said
    assert f"No live process of worker `manobi` (the last one, on {host}, stopped " in said
    assert "Runs next" not in said and "Due at" in said


def test_explain_of_no_such_task_is_one_line(couch, couch_url, db_name, jobs_dir):
    env = {**os.environ, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": db_name, "AFTER_CONFIG": os.devnull}
    result = subprocess.run([sys.executable, "-m", "afterd", "explain", "nope"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr == f"after: no task with id 'nope' in database {db_name}\n"
