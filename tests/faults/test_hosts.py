"""Many processes, many hosts: one occurrence runs once, whoever holds the task.

Replicas: several processes of one worker name on one host race for the same tasks;
claims are conditional updates, so each task has one owner and runs once.
Hosts: each simulated host is a worker process with its own AFTER_HOST and state
folder, reaching CouchDB only through its own CuttableProxy on a 127.0.0.x address.
Cutting one host's link for longer than the lease shows the lease at work.
"""

import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from helpers import wait_for
from proxy import CuttableProxy
from test_engine import post_all, record_task, statuses, wait_final
from workers import read_runs, starts_per_occurrence

LEASE_S = 6
SKEW_MARGIN_S = 1


def utcnow():
    return datetime.now(timezone.utc)


def replicas(couch, couch_url, db_name, spawn, records, tasks, span_s):
    processes = [spawn("manobi", couch_url, db_name).start() for _ in range(3)]
    base = utcnow() + timedelta(seconds=5)
    docs = [record_task(records, base + timedelta(seconds=span_s * i / tasks)) for i in range(tasks)]
    began = time.monotonic()
    ids = []
    for i in range(0, tasks, 1000):
        ids += post_all(couch, docs[i:i + 1000])
    final = wait_final(couch, ids, 60 + span_s * 3)
    counts = starts_per_occurrence(records)
    by_owner = Counter(d["owner"]["process"] for d in final.values())
    print(f"\nreplicas: 3 processes, {tasks} tasks, {sum(counts.values())} runs, "
          f"{sum(1 for n in counts.values() if n > 1)} duplicates, per process {dict(by_owner)}, "
          f"{time.monotonic() - began:.0f}s")
    assert {d["status"] for d in final.values()} == {"done"}
    assert len(counts) == tasks and set(counts.values()) == {1}
    assert all(p.alive() for p in processes)


def test_three_replicas_3000_tasks_no_duplicates(couch, couch_url, db_name, spawn, records):
    # 3,000 here to keep the suite short; the soak version below runs the 10,000 of the issue.
    replicas(couch, couch_url, db_name, spawn, records, tasks=3000, span_s=30)


@pytest.mark.soak
def test_three_replicas_10000_tasks_no_duplicates(couch, couch_url, db_name, spawn, records):
    replicas(couch, couch_url, db_name, spawn, records, tasks=10_000, span_s=100)


@pytest.fixture
def proxies(couch_url):
    made = {h: CuttableProxy(f"127.0.0.{i + 2}", couch_url).start()   # the URL: its credentials too
            for i, h in enumerate(("host-a", "host-b", "host-c"))}
    yield made
    for p in made.values():
        p.close()


def trace_task(records, date):
    return {"worker": "manobi", "date" : date.isoformat().replace("+00:00", "Z"), "status": "waiting",
            "job": {"name": "trace", "arguments": {"dir": str(records)}}}


def test_a_host_cut_off_past_its_lease_loses_its_tasks_and_runs_nothing_twice(
        couch, db_name, spawn, records, proxies):
    workers = {h: spawn("manobi", p.url, db_name, state=f"state-{h}", after_host=h,
                        after_lease_s=LEASE_S, after_skew_margin_s=SKEW_MARGIN_S)
               for h, p in proxies.items()}
    # host-a alone claims the load (the first process to see a task claims it), then the
    # others join: so the host that will be cut off surely owns tasks.
    workers["host-a"].start()
    base = utcnow() + timedelta(seconds=8)
    span_s = 24   # the load ends before host-a is back; its return is the test below
    docs = [trace_task(records, base + timedelta(seconds=span_s * i / 240)) for i in range(240)]
    ids = post_all(couch, docs)
    wait_for(lambda: "waiting" not in statuses(couch, ids).values(), 20, "every task claimed")
    workers["host-b"].start()
    workers["host-c"].start()
    wait_for(lambda: time.time() > base.timestamp() + 4, 30, "the load to be under way")
    owned_at_cut = {d["_id"]: d for d in couch.find({"_id": {"$in": ids}})
                    if d.get("owner", {}).get("host") == "host-a"}
    proxies["host-a"].cut()
    cut_s = time.time()
    time.sleep(3 * LEASE_S)   # the partition: three leases long
    proxies["host-a"].restore()
    restored_s = time.time()
    final = wait_final(couch, ids, 120)

    runs = read_runs(records)
    starts = starts_per_occurrence(records)
    a_starts = [r for r in runs if r["event"] == "start" and r["host"] == "host-a"]
    # Its tasks due once takeover had surely happened (lease + margin + one scan + slack),
    # and before it came back.
    takeover_by_s = cut_s + LEASE_S + SKEW_MARGIN_S + LEASE_S / 2 + 2
    taken = [i for i, d in owned_at_cut.items()
             if takeover_by_s < datetime.fromisoformat(d["date"].replace("Z", "+00:00")).timestamp()
             < restored_s - 1]
    interrupted = [i for i, d in final.items() if d["status"] == "error"]
    print(f"\nhosts: 240 tasks, host-a owned {len(owned_at_cut)} at the cut, {len(taken)} of them due "
          f"after the takeover and taken, {len(a_starts)} runs on host-a, "
          f"{sum(1 for n in starts.values() if n > 1)} duplicates, {len(interrupted)} Interrupted")

    assert max(starts.values()) == 1, "an occurrence ran twice"
    assert all(w.alive() for w in workers.values())
    # The cut-off host stops starting runs when its own lease runs out.
    late = [r for r in a_starts if cut_s + LEASE_S < r["t"]]
    assert not late, f"host-a started runs after its lease ran out: {late}"
    # Its tasks due after the takeover were run, once, by the others.
    assert len(taken) >= 5, "host-a owned too few tasks at the cut to test a takeover"
    for task_id in taken:
        doc = final[task_id]
        assert doc["status"] == "done" and doc["owner"]["host"] != "host-a", doc
    # The only errors are runs whose fate the others could not know: host-a's, at the cut.
    for task_id in interrupted:
        assert final[task_id]["error"]["type"] == "Interrupted" and task_id in owned_at_cut
    assert {d["status"] for d in final.values()} <= {"done", "error"}


def test_back_from_a_partition_a_host_runs_nothing_it_no_longer_owns(couch, db_name, spawn, records, proxies):
    """host-a owns tasks due after its partition ends; host-b takes them during it. When the
    link comes back, heartbeat and writes pass but the change feed stays blocked a while
    (a long-poll broken by a middlebox): host-a must confirm ownership before starting."""
    a = spawn("manobi", proxies["host-a"].url, db_name, state="state-a", after_host="host-a",
              after_lease_s=LEASE_S, after_skew_margin_s=SKEW_MARGIN_S).start()
    partition_s = 2 * LEASE_S + 2
    base = utcnow() + timedelta(seconds=partition_s + 6)
    ids = post_all(couch, [trace_task(records, base + timedelta(seconds=0.25 * i)) for i in range(20)])
    wait_for(lambda: set(statuses(couch, ids).values()) == {"scheduled"}, 20, "host-a to claim all")
    b = spawn("manobi", proxies["host-b"].url, db_name, state="state-b", after_host="host-b",
              after_lease_s=LEASE_S, after_skew_margin_s=SKEW_MARGIN_S).start()
    proxies["host-a"].cut()
    wait_for(lambda: all(d["owner"]["host"] == "host-b" for d in couch.find({"_id": {"$in": ids}})),
             partition_s, "host-b to take over every task")
    wait_for(lambda: time.time() > base.timestamp() - 6 + 0, 30, "the end of the partition")
    proxies["host-a"].blocked_paths = ("_changes",)
    proxies["host-a"].restore()
    final = wait_final(couch, ids, 60)
    proxies["host-a"].blocked_paths = ()
    starts = starts_per_occurrence(records)
    a_starts = [r for r in read_runs(records) if r["event"] == "start" and r["host"] == "host-a"]
    print(f"\nback from a partition: {len(ids)} tasks taken over, {len(a_starts)} run by host-a anyway, "
          f"{sum(1 for n in starts.values() if n > 1)} duplicates")
    assert a.alive() and b.alive()
    assert {d["owner"]["host"] for d in final.values()} == {"host-b"}
    assert not a_starts, f"host-a ran {len(a_starts)} tasks it no longer owned"
    assert max(starts.values()) == 1
