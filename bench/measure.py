"""Each measurement: set up a database, run a real worker against it, return figures."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import HOST, WORKER, Statuses, children_cpu_s, process_cpu_s, ms_epoch, percentile, post, rss_bytes, task, wait_count

HERE = Path(__file__).resolve().parent
LEAD_S = 3.0                 # head start before the first date, plus per task:
CLAIM_S_PER_TASK = 0.003     # so every task is claimed before its date, even on a loaded machine
STALL_S = 60.0               # give up when no run started for this long
SETTLE_S = 2.0               # after READY, before reading RSS: the feed's first request, the heartbeat


def _wait_claimed(statuses, n, due_s) -> bool:
    """Wait until all n tasks are `scheduled`; False if the first date came first."""
    while time.time() < due_s:
        if statuses.refresh().count("scheduled") >= n:
            return True
        time.sleep(0.1)
    return False


def lateness(bench, n: int, window_s: float, concurrency: int) -> dict:
    """n stamp tasks due evenly across window_s; lateness = the job's first line minus the date."""
    couch = bench.database("lateness")
    out = bench.work_dir / f"stamps-{couch.database}.txt"
    statuses = Statuses(couch)
    w = bench.worker(couch, "lateness", concurrency)
    try:
        w.start(timeout_s=60)
        first_s = ms_epoch(time.time() + LEAD_S + n * CLAIM_S_PER_TASK)
        docs = []
        for i in range(n):
            at = ms_epoch(first_s + i * window_s / n)
            docs.append(task("stamp", at, {"out": str(out), "at": at}))
        post(couch, docs)
        claimed = _wait_claimed(statuses, n, first_s)
        # However slow, wait while runs keep coming: the figure is how late, not whether.
        lines, seen, stalled_at = [], -1, time.monotonic() + window_s + (first_s - time.time())
        while time.monotonic() < stalled_at + STALL_S:
            lines = out.read_text().splitlines() if out.exists() else []
            if len(lines) >= n:
                break
            if len(lines) > seen:
                seen, stalled_at = len(lines), max(stalled_at, time.monotonic())
            time.sleep(0.2)
        late_ms = []
        for line in lines:
            _, at, started = line.split()
            late_ms.append((float(started) - float(at)) * 1000)
        if len(late_ms) < n:
            raise RuntimeError(f"lateness: only {len(late_ms)} of {n} runs started")
        wait_count(statuses, "done", n, timeout_s=1800)
    finally:
        w.stop()
    return {"p50_ms": percentile(late_ms, 50), "p99_ms": percentile(late_ms, 99),
            "max_ms": max(late_ms), "early": sum(1 for x in late_ms if x < 0),
            "claimed_before_due": claimed}


def aps_lateness(n: int, window_s: float) -> dict:
    """The same tasks in APScheduler 3.x, in a process of its own."""
    proc = subprocess.run([sys.executable, "-m", "bench.aps", str(n), str(window_s)],
                          capture_output=True, text=True, cwd=HERE.parent, timeout=window_s + 300)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.aps failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def throughput(bench, n: int, concurrency: int) -> dict:
    """n no-op tasks all due at the same moment: from that moment until all are `done` in CouchDB."""
    couch = bench.database("throughput")
    statuses = Statuses(couch)
    server_cpu0_s, worker_cpu0_s = process_cpu_s(bench.server.proc.pid), children_cpu_s()
    w = bench.worker(couch, "throughput", concurrency)
    try:
        w.start(timeout_s=60)
        due_s = ms_epoch(time.time() + LEAD_S + n * CLAIM_S_PER_TASK)
        post(couch, [task("noop", due_s, {}) for _ in range(n)])
        claimed = _wait_claimed(statuses, n, due_s)
        start_s = max(due_s, time.time())
        if start_s > time.time():
            time.sleep(start_s - time.time())
        done_s = wait_count(statuses, "done", n, timeout_s=1800)
        server_cpu_s = process_cpu_s(bench.server.proc.pid) - server_cpu0_s
    finally:
        w.stop()
    # CPU per task from POST to done (claim, run, outcome), whatever else the machine runs:
    # the worker with its zygote and job processes (reaped, so counted once it stopped), and
    # pouchdb-server (which also served the bench's own posts and looks).
    worker_cpu_s = children_cpu_s() - worker_cpu0_s
    return {"runs_per_s": n / (done_s - start_s), "elapsed_s": done_s - start_s, "claimed_before_due": claimed,
            "worker_cpu_ms_per_task": worker_cpu_s / n * 1000, "server_cpu_ms_per_task": server_cpu_s / n * 1000}


def post_to_scheduled(bench, samples: int, concurrency: int) -> dict:
    """POST one far-future task, then GET it until the worker's `scheduled` shows; one at a time."""
    couch = bench.database("post")
    w = bench.worker(couch, "post", concurrency)
    took_ms = []
    try:
        w.start(timeout_s=60)
        for _ in range(samples):
            doc = task("noop", time.time() + 86400, {})
            since = couch.update_seq()
            t0 = time.perf_counter()
            doc_id, _ = couch.post(doc)
            # Wait on the document's own change feed, not by asking again and again: a
            # tight loop of GETs would load the one server the worker needs.
            while True:
                results, since = couch.changes(since, selector={"_id": doc_id}, deadline_s=30)
                if any((r.get("doc") or {}).get("status") == "scheduled" for r in results):
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"task {doc_id} not scheduled within 30s")
            took_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    finally:
        w.stop()
    return {"p50_ms": percentile(took_ms, 50), "p99_ms": percentile(took_ms, 99)}


def owned_scheduled_task(date_s: float) -> dict:
    """A task as it stands once our worker claimed it: what a restart finds."""
    doc = task("noop", date_s, {"n": 1})
    doc.update(status="scheduled", owner={"process": f"{WORKER}:{HOST}:0", "host": HOST, "pid": 1},
               anchor=doc["date"], occurrence=0)
    return doc


def scale(bench, n: int, concurrency: int, starts: int) -> dict:
    """RSS per pending task and time to READY with n pending tasks (a restart: all already ours)."""
    empty = bench.database("empty")
    w = bench.worker(empty, "empty", concurrency)
    try:
        w.start(timeout_s=60)
        time.sleep(SETTLE_S)
        rss_empty = rss_bytes(w.proc.pid)
    finally:
        w.stop()
    couch = bench.database("scale")
    far_s = time.time() + 30 * 86400
    batch = []
    for i in range(n):
        batch.append(owned_scheduled_task(ms_epoch(far_s + i)))
        if len(batch) == 10_000:
            post(couch, batch)
            batch = []
    post(couch, batch)
    ready = []
    rss = None
    for _ in range(starts):
        w = bench.worker(couch, "scale", concurrency)
        t0 = time.monotonic()
        try:
            w.start(timeout_s=600)
            ready.append(time.monotonic() - t0)
            if rss is None:
                time.sleep(SETTLE_S)
                rss = rss_bytes(w.proc.pid)
                armed = "%d armed" % n in w.log()
        finally:
            w.stop(timeout_s=120)
    return {"ready_s": sorted(ready)[len(ready) // 2], "ready_all_s": ready, "rss_empty_bytes": rss_empty,
            "rss_bytes": rss, "bytes_per_task": (rss - rss_empty) / n, "all_armed": armed}


def state_bytes(n: int) -> dict:
    """The worker's in-memory state for n pending tasks, built by its own code, in a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "bench.memstate", str(n)], capture_output=True, text=True,
                          cwd=HERE.parent, timeout=1800, env={**os.environ, "AFTER_CONFIG": os.devnull})
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memstate failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)
