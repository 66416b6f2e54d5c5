"""Prometheus metrics through the node exporter's textfile folder, and the heartbeat's counters
(issue 14). The render tests are pure; the worker tests run a real `after start NAME`
against the test server and compare the file with what its known tasks did.
"""

import os
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from afterd.claims import Identity, heartbeat_doc
from afterd.metrics import BUCKETS_S, OUTCOMES, Metrics, outcome_kind, render, write_atomic
from helpers import wait_for
from test_engine import post_all, record_task, update, utcnow, wait_final
from workers import WorkerProcess


def families(text) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, name, **labels):
    """The value of the one sample of `name` (family or sample name) whose labels include `labels`."""
    found = [s for f in fams.values() for s in f.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def fresh(folder=None) -> Metrics:
    return Metrics(folder, worker="manobi", host="h1", slot=0, started_s=1000.0, now_m=50.0)


# -- pure: outcome names, render --------------------------------------------------------

@pytest.mark.parametrize("ok, error_type, canceled, kind", [
    (True, None, False, "done"),
    (False, "RuntimeError", False, "error"),
    (False, "JobNotFound", False, "error"),
    (False, "Timeout", False, "timeout"),
    (False, "Interrupted", False, "interrupted"),
    (False, "Lost", False, "interrupted"),
    (False, "Canceled", False, "canceled"),
    (False, "Timeout", True, "canceled"),      # the user's cancel came first
])
def test_outcome_kind(ok, error_type, canceled, kind):
    assert outcome_kind(ok, error_type, canceled) == kind


def test_render_of_a_fresh_process_parses_and_counts_nothing():
    fams = families(render(fresh(), "manobi", "h1", slot=0))
    for kind in OUTCOMES:
        assert sample(fams, "after_runs_total", outcome=kind, worker="manobi", host="h1", slot="0") == 0
    assert sample(fams, "after_up") == 1
    assert sample(fams, "after_run_duration_seconds_count") == 0
    assert fams["after_run_duration_seconds"].type == "histogram"
    assert fams["after_runs"].type == "counter"   # the parser names a counter without _total
    assert "after_tasks" not in fams   # no state yet: gauges of an instant are left out, not faked


def test_render_counts_runs_and_fills_histogram_buckets():
    m = fresh()
    m.run_ended("done", duration_s=0.0004, lateness_s=0.002, job="hello")
    m.run_ended("done", duration_s=42.0, lateness_s=0.0, job="hello")
    m.run_ended("error", duration_s=2 * 3600.0, lateness_s=900.0, job="bill")
    m.run_ended("interrupted")
    fams = families(render(m, "manobi", "h1"))
    assert sample(fams, "after_runs_total", outcome="done") == 2
    assert sample(fams, "after_runs_total", outcome="error") == 1
    assert sample(fams, "after_runs_total", outcome="interrupted") == 1
    assert sample(fams, "after_runs_total", outcome="timeout") == 0
    assert sample(fams, "after_run_duration_seconds_count") == 3
    assert sample(fams, "after_run_duration_seconds_sum") == pytest.approx(42.0004 + 7200)
    assert sample(fams, "after_run_duration_seconds_bucket", le="0.001") == 1
    assert sample(fams, "after_run_duration_seconds_bucket", le="60.0") == 2
    assert sample(fams, "after_run_duration_seconds_bucket", le="7200.0") == 3
    assert sample(fams, "after_run_duration_seconds_bucket", le="+Inf") == 3
    assert sample(fams, "after_run_lateness_seconds_bucket", le="0.001") == 1
    assert sample(fams, "after_run_lateness_seconds_bucket", le="0.0005") == 1   # the 0.0 one
    assert sample(fams, "after_run_lateness_seconds_bucket", le="900.0") == 3
    # cumulative and ending at the count, from milliseconds to hours
    buckets = [s.value for s in fams["after_run_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and len(buckets) == len(BUCKETS_S) + 1
    assert BUCKETS_S[0] < 0.001 and BUCKETS_S[-1] >= 3600


def test_gauges_of_an_instant_use_the_times_passed_in():
    m = fresh()
    m.problem("feed", True, now_m=100.0)
    m.problem("writer", True, now_m=101.0)
    m.couchdb_answered(now_m=90.0)
    m.set_state(now_s=2000.0, now_m=130.0, scheduled=7, running=2, held=10, next_due_s=2100.5,
                lease_until_m=160.0, journal_pending=3)
    fams = families(render(m, "manobi", "h1"))
    assert sample(fams, "after_tasks", status="scheduled") == 7
    assert sample(fams, "after_tasks", status="running") == 2
    assert sample(fams, "after_tasks", status="other") == 1
    assert sample(fams, "after_next_due_seconds") == 2100.5
    assert sample(fams, "after_feed_lag_seconds") == 30.0
    assert sample(fams, "after_couchdb_up") == 0
    assert sample(fams, "after_couchdb_last_success_age_seconds") == 40.0
    assert sample(fams, "after_lease_remaining_seconds") == 30.0
    assert sample(fams, "after_journal_pending_writes") == 3
    assert sample(fams, "after_metrics_updated_seconds") == 2000.0
    # recovered: up again, the feed no longer behind
    m.problem("feed", False, now_m=140.0)
    m.problem("writer", False, now_m=140.0)
    m.set_state(now_s=2010.0, now_m=141.0, scheduled=0, running=0, held=0, next_due_s=None,
                lease_until_m=None, journal_pending=0)
    fams = families(render(m, "manobi", "h1"))
    assert sample(fams, "after_couchdb_up") == 1
    assert sample(fams, "after_feed_lag_seconds") == 0
    assert sample(fams, "after_couchdb_last_success_age_seconds") == 1.0
    assert "after_next_due_seconds" not in fams   # nothing armed


def test_jobs_failing_to_load_counts_jobs_until_they_load_again():
    m = fresh()
    m.run_ended("error", job="missing", error_type="JobNotFound")
    m.run_ended("error", job="broken", error_type="SyntaxError")
    m.run_ended("error", job="broken", error_type="SyntaxError")
    assert sample(families(render(m, "w", "h")), "after_jobs_failing_to_load") == 2
    m.run_ended("error", job="broken", error_type="RuntimeError")   # it loaded, then failed
    assert sample(families(render(m, "w", "h")), "after_jobs_failing_to_load") == 1
    assert m.heartbeat_fields()["jobs_failing"] == ["missing"]


def test_label_values_are_escaped():
    text = render(fresh(), 'we"ird\\name', "h\n1")
    fams = families(text)
    assert sample(fams, "after_up", worker='we"ird\\name', host="h\n1") == 1


# -- the file --------------------------------------------------------------------------

def test_no_folder_no_file(tmp_path):
    m = fresh(tmp_path / "node-exporter")
    assert m.write(now_m=1.0) is None
    assert not (tmp_path / "node-exporter").exists()   # nothing created
    assert fresh(None).write(now_m=1.0) is None


def test_the_file_is_replaced_atomically_and_leaves_no_temporary(tmp_path):
    (tmp_path / ".after_manobi_0.prom.999.tmp").write_text("a predecessor killed mid-write")
    (tmp_path / "other.prom").write_text("someone else's\n")
    m = fresh(tmp_path)
    path = m.write(now_m=1.0)
    assert path == tmp_path / "after_manobi_0.prom"
    assert families(path.read_text())["after_up"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"   # the node exporter runs as another user
    m.run_ended("done", 0.1, 0.0)
    assert not m.due(now_m=2.0) and m.due(now_m=6.0)
    m.write(now_m=6.0)
    assert sample(families(path.read_text()), "after_runs_total", outcome="done") == 1
    assert sorted(os.listdir(tmp_path)) == ["after_manobi_0.prom", "other.prom"]


def test_a_failed_write_removes_its_temporary_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.prom"
    write_atomic(path, "old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["x.prom"]


def test_a_file_that_cannot_be_written_warns_once_and_does_not_stop_the_worker(tmp_path, caplog):
    (tmp_path / "after_manobi_0.prom").mkdir()   # fails for root too, unlike a read-only folder
    m = fresh(tmp_path)
    assert m.write(now_m=1.0) is None and m.write(now_m=10.0) is None
    assert sum("cannot write metrics" in r.message for r in caplog.records) == 1
    assert sorted(os.listdir(tmp_path)) == ["after_manobi_0.prom"]   # no temporary left


def test_heartbeat_document_carries_the_counters():
    m = fresh()
    m.run_ended("done", 1.5, 0.25)
    m.run_ended("timeout", 30.0, 0.0)
    me = Identity("manobi", "h1", 0, 123)
    doc = heartbeat_doc(me, datetime(2026, 12, 1, tzinfo=timezone.utc), 60.0, counters=m.heartbeat_fields())
    assert doc["metrics"] == {"runs": {"done": 1, "error": 0, "timeout": 1, "interrupted": 0, "canceled": 0},
                              "run_s": 31.5, "late_s": 0.25}
    assert "metrics" not in heartbeat_doc(me, datetime(2026, 12, 1, tzinfo=timezone.utc), 60.0)


# -- a real worker -----------------------------------------------------------------------

@pytest.fixture
def metrics_worker(couch_url, db_name, tmp_path):
    started = []

    def make(folder, name="manobi"):
        w = WorkerProcess(name, couch_url, db_name, tmp_path / "state",
                          env={"AFTER_METRICS_DIR": str(folder), "AFTER_CONCURRENCY": "4"})
        started.append(w)
        return w
    yield make
    for w in started:
        w.kill()


def test_the_metrics_file_counts_what_a_run_of_known_tasks_did(couch, metrics_worker, records, tmp_path):
    folder = tmp_path / "node-exporter"
    folder.mkdir()
    w = metrics_worker(folder).start()
    path = folder / "after_manobi_0.prom"
    wait_for(path.exists, 20, "the metrics file to appear")
    soon = utcnow() + timedelta(seconds=1)
    ids = post_all(couch, [
        record_task(records, soon), record_task(records, soon), record_task(records, soon),
        record_task(records, soon, args={"fail": True}),
        record_task(records, soon, args={"sleep_s": 30}, timeout=0.5),
        record_task(records, soon, job={"name": "no_such_job", "arguments": []}),
    ])
    long_one = post_all(couch, [record_task(records, soon, args={"sleep_s": 60})])[0]
    far = post_all(couch, [record_task(records, utcnow() + timedelta(hours=1))])[0]
    wait_for(lambda: couch.get(long_one).get("status") == "running", 30, "the long run to be running")
    update(couch, long_one, status="cancel")
    docs = wait_final(couch, ids + [long_one], 60)
    assert [docs[i]["status"] for i in ids + [long_one]] == ["done"] * 3 + ["error"] * 3 + ["canceled"]

    def counted():
        fams = families(path.read_text())
        runs = {kind: sample(fams, "after_runs_total", outcome=kind) for kind in OUTCOMES}
        return (fams, runs) if sum(runs.values()) == 7 else None
    fams, runs = wait_for(counted, 30, "the file to count seven runs")
    assert runs == {"done": 3, "error": 2, "timeout": 1, "interrupted": 0, "canceled": 1}
    labels = {"worker": "manobi", "host": os.uname().nodename, "slot": "0"}
    assert sample(fams, "after_up", **labels) == 1
    assert sample(fams, "after_run_duration_seconds_count") == 7   # every run has a duration
    assert sample(fams, "after_jobs_failing_to_load") == 1
    assert sample(fams, "after_couchdb_up") == 1
    assert sample(fams, "after_lease_remaining_seconds") > 0

    def settled():   # the far task armed, every outcome written back
        f = families(path.read_text())
        ok = (sample(f, "after_tasks", status="scheduled") == 1
              and sample(f, "after_journal_pending_writes") == 0)
        return f if ok else None
    fams = wait_for(settled, 30, "the gauges to settle")
    assert sample(fams, "after_next_due_seconds") == pytest.approx(
        datetime.fromisoformat(couch.get(far)["date"].replace("Z", "+00:00")).timestamp())

    # The heartbeat carries the same counters (renewed every lease_s / 4; at stop at once).
    assert w.stop() == 0
    beat = couch.get("after:process:manobi:" + os.uname().nodename + ":0")
    assert beat["stopped"] is True
    assert beat["metrics"]["runs"] == runs
    assert beat["metrics"]["jobs_failing"] == ["no_such_job"]
    final = families(path.read_text())
    assert sample(final, "after_up") == 0   # the last file says it stopped cleanly
    assert {kind: sample(final, "after_runs_total", outcome=kind) for kind in OUTCOMES} == runs
    assert sorted(os.listdir(folder)) == ["after_manobi_0.prom"]


def test_no_folder_means_no_file_and_nothing_created(couch, metrics_worker, records, tmp_path):
    folder = tmp_path / "absent" / "node-exporter"
    w = metrics_worker(folder).start()
    [task] = post_all(couch, [record_task(records, utcnow())])
    assert wait_final(couch, [task], 30)[task]["status"] == "done"
    assert w.stop() == 0
    assert not (tmp_path / "absent").exists()
