"""Leases, outages and takeovers, stepped through time (tests/stepped.py).

The same stories as the end-to-end ones in test_engine.py, told at the decision level:
real Worker loops, heartbeats and writers on an in-memory store, with the clock moved
in 50 ms steps. Minutes of leases and outages take a fraction of a second of wall time,
so each story can afford exact assertions on when things happened.
"""

from afterd.fields import format_date, parse_date

from stepped import Cluster


def task(cluster, due_in_s, worker="manobi", **fields):
    return cluster.post({"worker": worker, "date": format_date(cluster.at(due_in_s)),
                         "status": "waiting", "job": {"name": "hello", "arguments": []}, **fields})


def statuses(cluster, ids):
    return {cluster.doc(i)["status"] for i in ids}


def due_s(doc) -> float:
    return parse_date(doc["date"]).timestamp()


def test_an_outage_shorter_than_the_lease_runs_everything_on_time_and_writes_it_after(tmp_path):
    c = Cluster(tmp_path, lease_s=60, skew_margin_s=5)
    c.process()
    ids = [task(c, 4 + i) for i in range(25)]
    c.run_for(2)
    assert statuses(c, ids) == {"scheduled"}
    dates = {i: due_s(c.doc(i)) for i in ids}
    c.store.down = True
    c.run_for(30)                      # the outage: every task came due during it
    assert statuses(c, ids) == {"scheduled"}, "nothing could be written during the outage"
    c.store.down = False
    assert c.run_for(10, until=lambda: statuses(c, ids) == {"done"})
    starts = c.starts()
    assert sorted(starts.values()) == [1] * 25
    for run, t in c.started_at().items():
        task_id = run.split("@")[0] if "@" in run else None
        late = [t - d for i, d in dates.items() if run.startswith(i)]
        assert late and 0 <= late[0] < 0.1, (task_id, late)


def test_an_outage_longer_than_the_lease_starts_nothing_while_the_lease_is_lapsed(tmp_path):
    c = Cluster(tmp_path, lease_s=6, skew_margin_s=1)
    p = c.process()
    ids = [task(c, 3 + i) for i in range(16)]
    c.run_for(1)
    c.store.down = True
    outage_start = c.clock.t
    c.run_for(14)
    assert "lease expired" in "; ".join(p.worker._problems.values())
    c.store.down = False
    outage_end = c.clock.t
    assert c.run_for(20, until=lambda: statuses(c, ids) == {"done"})
    assert sorted(c.starts().values()) == [1] * 16
    # The lease was last renewed before the outage; it held lease_s - skew_margin_s.
    lapse = outage_start + 6 - 1
    started = sorted(c.started_at().values())
    assert not [t for t in started if lapse <= t < outage_end], "a run started while the lease had lapsed"
    assert [t for t in started if t < lapse], "runs due before the lapse ran on time"
    assert [t for t in started if t >= outage_end]


def test_a_dead_process_s_tasks_go_to_its_peer_once_its_lease_ends_and_none_runs_twice(tmp_path):
    c = Cluster(tmp_path, lease_s=10, skew_margin_s=2)
    a = c.process(host="host-a", run_s=0.2)
    b = c.process(host="host-b", run_s=0.2)
    ids = [task(c, 5 + i) for i in range(30)]
    c.run_for(2)
    a_tasks = [i for i in ids if c.doc(i)["owner"]["process"] == a.me.process]
    assert a_tasks, "both processes claimed tasks"
    a.kill()
    expires_s = parse_date(c.doc(a.me.heartbeat_id)["expires_at"]).timestamp()
    assert c.run_for(60, until=lambda: statuses(c, ids) <= {"done", "error"})
    starts, started_at = c.starts(), c.started_at()
    assert set(starts.values()) == {1}, "no run started twice"
    for i in a_tasks:
        doc = c.doc(i)
        runs = [r for r in starts if r.startswith(i)]
        if due_s(doc) <= expires_s:
            # Its owner may have started it before dying: at most once means not again.
            assert doc["status"] == "error" and doc["error"]["type"] == "Interrupted", doc
            assert not runs
        else:
            # Due after the dead owner's lease: it cannot have started; its peer runs it,
            # never before the lease (plus the skew margin) ended.
            assert doc["status"] == "done" and doc["owner"]["process"] == b.me.process, doc
            [run] = runs
            assert started_at[run] >= max(due_s(doc), expires_s + 2) - 0.05
    for i in set(ids) - set(a_tasks):
        [run] = [r for r in starts if r.startswith(i)]
        assert c.doc(i)["status"] == "done" and started_at[run] - due_s(c.doc(i)) < 0.1


def test_a_run_cut_by_its_process_s_death_is_interrupted_once_and_retried_if_allowed(tmp_path):
    c = Cluster(tmp_path, lease_s=10, skew_margin_s=2)
    a = c.process(host="host-a", run_s=5)
    no_retry, one_retry = task(c, 2), task(c, 2, retry=1)
    assert c.run_for(5, until=lambda: statuses(c, [no_retry, one_retry]) == {"running"})
    a.kill()
    b = c.process(host="host-b", run_s=0.5)
    assert c.run_for(60, until=lambda: statuses(c, [no_retry, one_retry]) == {"error", "done"})
    cut = c.doc(no_retry)
    assert cut["status"] == "error" and cut["error"]["type"] == "Interrupted"
    assert a.me.process in cut["error"]["message"]
    retried = c.doc(one_retry)
    assert retried["status"] == "done"
    assert [(h["attempt"], h["status"]) for h in retried["history"]] == [(1, "interrupted"), (2, "done")]
    assert sum(b.runner.starts.values()) == 1, "only the task allowing a retry ran again"


def test_a_peer_that_stopped_cleanly_hands_over_its_tasks_without_waiting_for_the_lease(tmp_path):
    c = Cluster(tmp_path, lease_s=60, skew_margin_s=5)
    a = c.process(host="host-a")
    ids = [task(c, 30 + i) for i in range(5)]
    c.run_for(1)
    assert {c.doc(i)["owner"]["process"] for i in ids} == {a.me.process}
    b = c.process(host="host-b")
    a.heartbeat.renew(stopped=True)   # what a worker's shutdown writes last
    a.kill()
    assert c.run_for(5, until=lambda: {c.doc(i)["owner"]["process"] for i in ids} == {b.me.process})
    assert c.run_for(60, until=lambda: statuses(c, ids) == {"done"})
    assert sorted(c.starts().values()) == [1] * 5


def test_a_reschedule_written_during_a_run_is_where_the_task_goes_after_it(tmp_path):
    c = Cluster(tmp_path)
    c.process(run_s=5)
    t = task(c, 1, repeat={"hours": 1})
    assert c.run_for(10, until=lambda: c.doc(t)["status"] == "running")
    moved_to = format_date(c.at(30))
    c.store.store.put({**c.doc(t), "status": "reschedule", "date": moved_to})
    assert c.run_for(10, until=lambda: c.doc(t).get("runs") == 1)
    doc = c.doc(t)
    assert (doc["status"], doc["date"], doc["anchor"]) == ("scheduled", moved_to, moved_to)
    assert c.run_for(40, until=lambda: c.doc(t).get("runs") == 2)
    assert abs(min(t_ for r, t_ in c.started_at().items() if moved_to in r) - due_s({"date": moved_to})) < 0.1
