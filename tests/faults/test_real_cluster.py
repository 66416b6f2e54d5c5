"""Exactly once and nothing lost on a real CouchDB cluster (issue 21's table).

Skipped unless AFTER_TEST_CLUSTER_URLS names the three nodes of a real Apache CouchDB
cluster (`http://admin:pw@127.0.0.1:25984,...:25985,...:25986`; q=2, n=3, w=r=2 as
CouchDB sets them by default). The cases that take a node away need
AFTER_TEST_CLUSTER_CTL, a command that takes `kill|revive|cut|heal NODE` (NODE: node1,
node2, node3, the order of the URLs): how a node is killed or cut off depends on how the
cluster was started, so the test asks the one who started it. CI has no real cluster:
there the cluster model (tests/test_cluster_model.py) stands in, with seeded schedules.

Each row starts processes of worker `manobi` (one per node, or all on one node), posts
tasks of the `record` job (it appends its run to a file) due over a spread of seconds,
optionally takes something away in the middle, then waits until every task has ended
and counts what the issue counts: ran twice, deleted, claimed and never run, ended
`error` though nothing died, conflicts left. Every column must be 0.
"""

import os
import subprocess
import threading
import time
import uuid
from datetime import timedelta

import pytest
import requests

from afterd.couch import Couch
from test_cluster import utcnow
from test_engine import record_task, statuses
from workers import read_runs, starts_per_occurrence

URLS = [u.strip() for u in os.environ.get("AFTER_TEST_CLUSTER_URLS", "").split(",") if u.strip()]
CTL = os.environ.get("AFTER_TEST_CLUSTER_CTL")
SCALE = float(os.environ.get("AFTER_TEST_CLUSTER_SCALE", "1"))   # < 1: smaller rows, for a quick look
FINAL = {"done", "error", "canceled"}
COLUMNS = ("ran twice", "deleted", "never run", "error, nothing died", "conflicts left")

pytestmark = pytest.mark.skipif(len(URLS) != 3, reason="AFTER_TEST_CLUSTER_URLS names no 3-node cluster")


def ctl(*args):
    if not CTL:
        pytest.skip("AFTER_TEST_CLUSTER_CTL is not set: cannot take a node away")
    subprocess.run([CTL, *args], check=True, capture_output=True, timeout=120)


# name: (processes' nodes, tasks, spread_s, fault) — fault: (what, node or worker index, at_s, for_s)
ROWS = {
    "one per node, 300 over 6 s": ([0, 1, 2], 300, 6, None),
    "one per node, 1,500 over 40 s": ([0, 1, 2], 1500, 40, None),
    "one per node, 1,500 over 40 s, node3 killed at 15 s for 20 s": ([0, 1, 2], 1500, 40, ("kill", 2, 15, 20)),
    "three on node1, 600 over 10 s": ([0, 0, 0], 600, 10, None),
    "two on node1, 60 tasks 20 ms apart": ([0, 0], 60, 1.2, None),
    "one per node, 1,500 over 40 s, a worker killed -9 at 15 s": ([0, 1, 2], 1500, 40, ("kill-worker", 1, 15, 5)),
    "one per node, 1,500 over 40 s, node2 cut off at 15 s for 20 s": ([0, 1, 2], 1500, 40, ("cut", 1, 15, 20)),
}


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_real_cluster_row(row, spawn, records):
    nodes, tasks, spread_s, fault = ROWS[row]
    tasks = max(10, int(tasks * SCALE))
    db = "after-cluster-" + uuid.uuid4().hex[:8]
    couch = Couch(URLS[0], db)
    couch.ensure_database()
    couch.ensure_design()
    assert couch.quorum().get("n", 1) > 1, f"{URLS[0]} keeps one copy of each document: not a cluster"
    workers = [spawn("manobi", URLS[node], db, state=f"state-{i}", after_host=f"host-{i}")
               .start(wait_ready=True, timeout_s=120) for i, node in enumerate(nodes)]
    try:
        start = utcnow() + timedelta(seconds=8)
        docs = [record_task(records, start + timedelta(seconds=spread_s * i / tasks)) for i in range(tasks)]
        for d in docs:
            d["_id"] = uuid.uuid4().hex
        for i in range(0, tasks, 500):
            answers = couch.bulk(docs[i:i + 500])
            assert all("rev" in a for a in answers), answers[:3]
        ids = [d["_id"] for d in docs]
        died = threading.Event()
        if fault:
            threading.Thread(target=inflict, args=(fault, workers, start, died), daemon=True).start()
        deadline = time.monotonic() + 240 + spread_s
        found = {}
        while time.monotonic() < deadline:
            try:
                found = statuses(couch, ids)
            except Exception:   # a node away: ask again
                time.sleep(1)
                continue
            if len(found) == len(ids) and all(s in FINAL for s in found.values()):
                break
            time.sleep(2)
        # Quiet: conflicts the last writes made are resolved by the feeds within a while.
        quiet_by = time.monotonic() + 120
        while time.monotonic() < quiet_by and conflicted(couch, ids):
            time.sleep(5)
        figures = count(couch, ids, records, died.is_set() or fault is not None and fault[0] == "kill-worker")
    finally:
        if fault and fault[0] == "cut":
            subprocess.run([CTL, "heal", f"node{fault[1] + 1}"], capture_output=True)
        for w in workers:
            w.stop(60)
        if "figures" in locals() and not any(figures[k] for k in COLUMNS):
            requests.delete(f"{URLS[0]}/{db}", timeout=30)   # kept when something is off, to look at
    print(f"\n| {row} | " + " | ".join(str(figures[k]) for k in COLUMNS) + f" | runs {figures['runs']} |")
    if any(figures[k] for k in COLUMNS):
        print(f"database {db} kept; examples: {figures['examples']}")
    assert figures["ran twice"] == 0, figures
    assert figures["deleted"] == 0, figures
    assert figures["never run"] == 0, figures
    assert figures["error, nothing died"] == 0, figures
    assert figures["conflicts left"] == 0, figures


def inflict(fault, workers, start, died):
    what, index, at_s, for_s = fault
    time.sleep(max(0.0, (start - utcnow()).total_seconds() + at_s))
    if what == "kill-worker":
        workers[index].kill()
        died.set()
        time.sleep(for_s)
        workers[index].start(wait_ready=False)
        return
    node = f"node{index + 1}"
    ctl(what, node)
    time.sleep(for_s)
    ctl("revive" if what == "kill" else "heal", node)


def count(couch, ids, records, a_worker_died: bool) -> dict:
    final = {}
    for i in range(0, len(ids), 500):
        for d in couch.find({"_id": {"$in": ids[i:i + 500]}}):
            final[d["_id"]] = d
    starts = starts_per_occurrence(records)
    deleted = [i for i in ids if i not in final and not live(couch, i)]
    errors = [d for d in final.values() if d.get("status") == "error"]
    # An interrupted run is an error a death explains: only where a worker was killed.
    unexplained = [d for d in errors if not (a_worker_died and "interrupted" in str(d.get("error")).lower())]
    twice = [k for k, n in starts.items() if n > 1]
    never = [i for i, d in final.items() if d.get("status") not in FINAL]
    left = conflicted(couch, ids)
    return {"ran twice": len(twice), "deleted": len(deleted), "never run": len(never),
            "error, nothing died": len(unexplained), "conflicts left": len(left),
            "runs": len([r for r in read_runs(records) if r["event"] == "start"]),
            "examples": {"twice": twice[:3], "deleted": deleted[:3], "never": never[:3],
                         "error": [d["_id"] for d in unexplained[:3]], "conflicts": left[:3]}}


def conflicted(couch, ids) -> list:
    found = []
    for i in ids:
        try:
            doc = couch.get_conflicted(i)
        except Exception:
            continue
        if doc and doc.get("_conflicts"):
            found.append(i)
    return found


def live(couch, doc_id) -> bool:
    try:
        couch.get(doc_id)
        return True
    except Exception:
        return False
