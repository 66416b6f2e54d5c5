"""Each measurement: set up a database, run a real worker against it, return figures."""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.harness import HOST, WORKER, Statuses, children_cpu_s, ms_epoch, percentile, post, rss_bytes, task, wait_count
from bench.server import descendants

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
    """n stamp tasks due evenly across window_s; lateness = the job's first line minus the date.

    Also how the runs went when they came due faster than the machine starts them: the order
    they started in (against their dates) and the rate at which all were done."""
    couch = bench.database("lateness")
    out = bench.work_dir / f"stamps-{couch.database}.txt"
    statuses = Statuses(couch)
    server_cpu0_s, worker_cpu0_s = bench.server.cpu_s(), children_cpu_s()
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
        runs = []
        for line in lines:
            _, at, started = line.split()
            runs.append((float(at), float(started)))
        if len(runs) < n:
            raise RuntimeError(f"lateness: only {len(runs)} of {n} runs started")
        done_s = wait_count(statuses, "done", n, timeout_s=1800)
        server_cpu_s = None if server_cpu0_s is None else bench.server.cpu_s() - server_cpu0_s
        statuses.verify("done", n, wait_s=600)
    finally:
        w.stop()
    worker_cpu_s = children_cpu_s() - worker_cpu0_s
    bench.done_with(couch)
    late_ms = [(started - at) * 1000 for at, started in runs]
    return {"p50_ms": percentile(late_ms, 50), "p99_ms": percentile(late_ms, 99),
            "max_ms": max(late_ms), "early": sum(1 for x in late_ms if x < 0),
            "claimed_before_due": claimed, "due_per_s": n / window_s if window_s else None,
            "done_per_s": n / (done_s - first_s), "starts_per_s": starts_per_s(runs),
            "worker_cpu_ms_per_task": worker_cpu_s / n * 1000,
            "server_cpu_ms_per_task": None if server_cpu_s is None else server_cpu_s / n * 1000,
            **start_order(runs, concurrency)}


def starts_per_s(runs: list[tuple[float, float]]) -> float:
    """The rate runs started at, from the first start to the last (the jobs' own clocks)."""
    starts = [started for _, started in runs]
    span = max(starts) - min(starts)
    return (len(starts) - 1) / span if span > 0 else float("inf")


def start_order(runs: list[tuple[float, float]], concurrency: int) -> dict:
    """How far the start order strays from the date order, for runs (date, start):
    `displacement`, per run, |its rank by start - its rank by date|: runs given slots at the
    same moment race to their first line, so a displacement up to the number of slots is
    still date order; `inversion`, per run, how much later it started than the earliest
    start of a run due after it (0 when none due later started before it)."""
    by_date = sorted(range(len(runs)), key=lambda k: (runs[k][0], k))
    date_rank = {k: r for r, k in enumerate(by_date)}
    by_start = sorted(range(len(runs)), key=lambda k: runs[k][1])
    moved = [abs(r - date_rank[k]) for r, k in enumerate(by_start)]
    inversion_s, later_min = 0.0, float("inf")
    for k in reversed(by_date):
        inversion_s = max(inversion_s, runs[k][1] - later_min)
        later_min = min(later_min, runs[k][1])
    return {"order_max_displacement": max(moved, default=0),
            "order_displaced_beyond_slots": sum(1 for m in moved if m > concurrency) / max(1, len(moved)),
            "order_max_inversion_ms": inversion_s * 1000}


def backlog(bench, n: int, concurrency: int, overload: float = 2.0) -> dict:
    """More runs due than the machine starts. First the steady rate: n stamp tasks all due
    at once (the rate the machine starts runs when it has them all). Right after, with the
    same job and n: tasks due one after another at `overload` x that rate. They must start
    in date order, and the backlog drain at >= 90% of the steady rate. Both rates are
    starts per second by the jobs' own clocks (no polling granularity), measured back to
    back so that what else the machine runs weighs on both alike."""
    steady = lateness(bench, n, 0.0, concurrency)
    window_s = n / (overload * steady["starts_per_s"])
    got = lateness(bench, n, window_s, concurrency)
    got.update(window_s=window_s, overload=overload, steady_starts_per_s=steady["starts_per_s"],
               steady_done_per_s=steady["done_per_s"],
               steady_worker_cpu_ms_per_task=steady["worker_cpu_ms_per_task"],
               steady_server_cpu_ms_per_task=steady["server_cpu_ms_per_task"],
               drain_vs_steady=got["starts_per_s"] / steady["starts_per_s"],
               done_vs_steady=got["done_per_s"] / steady["done_per_s"])
    if got["server_cpu_ms_per_task"] is not None and steady["server_cpu_ms_per_task"] is not None:
        # The same comparison by CPU per run, which the machine's other load hardly moves:
        # the rate two idle cores would drain the backlog at, over the steady one.
        got["cpu_rate_vs_steady"] = ((steady["worker_cpu_ms_per_task"] + steady["server_cpu_ms_per_task"])
                                     / (got["worker_cpu_ms_per_task"] + got["server_cpu_ms_per_task"]))
    return got


def aps_lateness(n: int, window_s: float) -> dict:
    """The same tasks in APScheduler 3.x, in a process of its own."""
    proc = subprocess.run([sys.executable, "-m", "bench.aps", str(n), str(window_s)],
                          capture_output=True, text=True, cwd=HERE.parent, timeout=window_s + 300)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.aps failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def zygote_of(worker_pid: int) -> int | None:
    for pid in descendants(worker_pid):
        try:
            if b"afterd.zygote" in open(f"/proc/{pid}/cmdline", "rb").read():
                return pid
        except OSError:
            continue
    return None


def throughput(bench, n: int, concurrency: int) -> dict:
    """n no-op tasks all due at the same moment: from that moment until all are `done` in CouchDB."""
    couch = bench.database("throughput")
    statuses = Statuses(couch)
    server_cpu0_s, worker_cpu0_s = bench.server.cpu_s(), children_cpu_s()
    w = bench.worker(couch, "throughput", concurrency)
    zygote_rss = None
    try:
        w.start(timeout_s=60)
        due_s = ms_epoch(time.time() + LEAD_S + n * CLAIM_S_PER_TASK)
        post(couch, [task("noop", due_s, {}) for _ in range(n)])
        claimed = _wait_claimed(statuses, n, due_s)
        zygote = zygote_of(w.proc.pid)
        start_s = max(due_s, time.time())
        if start_s > time.time():
            time.sleep(start_s - time.time())
        # CPU at the due moment: what the runs themselves cost (not the POSTs and claims
        # before) is the difference at the end, the part that bounds runs_per_s.
        split_due, server_due_s = cpu_split(w.proc.pid, zygote), bench.server.cpu_s()
        time.sleep(0.5)
        if zygote:   # its size under load: the floor's fork is timed from a process this big
            zygote_rss = rss_bytes(zygote)
        done_s = wait_count(statuses, "done", n, timeout_s=1800)
        server_cpu1_s = bench.server.cpu_s()
        split = cpu_split(w.proc.pid, zygote)
        later_s = statuses.verify("done", n, wait_s=600)
        if later_s is not None:   # (the documents' reads are then counted too)
            done_s, server_cpu1_s, split = later_s, bench.server.cpu_s(), cpu_split(w.proc.pid, zygote)
    finally:
        w.stop()
    template = next(iter(couch.scan({"status": "done"}, page_size=1)))[0]
    bench.done_with(couch)
    # CPU per task from POST to done (claim, run, outcome), whatever else the machine runs:
    # the worker with its zygote and job processes (reaped, so counted once it stopped), and
    # the server (which also served the bench's posts and its looks at the feed).
    worker_cpu_s = children_cpu_s() - worker_cpu0_s
    server_ms = None if server_cpu0_s is None else (server_cpu1_s - server_cpu0_s) / n * 1000
    window_s = sum(split[k] - split_due.get(k, 0.0) for k in ("worker_process", "zygote", "jobs") if k in split)
    if server_due_s is not None:
        window_s += server_cpu1_s - server_due_s
    return {"runs_per_s": n / (done_s - start_s), "run_cpu_ms_per_task": window_s / n * 1000, "elapsed_s": done_s - start_s, "claimed_before_due": claimed,
            "worker_cpu_ms_per_task": worker_cpu_s / n * 1000, "server_cpu_ms_per_task": server_ms,
            "zygote_rss_bytes": zygote_rss, "done_doc": template,
            **{f"{k}_cpu_ms_per_task": v / n * 1000 for k, v in split.items() if k != "jobs_minor_faults"},
            "jobs_minor_faults_per_task": split.get("jobs_minor_faults", 0) / n}


def cpu_split(worker_pid: int, zygote_pid: int | None) -> dict:
    """CPU seconds so far of the worker process itself, its zygote itself, and the job
    processes the zygote reaped (its cutime/cstime): where the worker side's cost goes."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in (("worker_process", worker_pid), ("zygote", zygote_pid)):
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        out[name] = (int(f[11]) + int(f[12])) / tck
        if name == "zygote":
            out["jobs"] = (int(f[13]) + int(f[14])) / tck
            out["jobs_minor_faults"] = int(f[8])   # of the reaped job processes: copy-on-write
    return out


def process_floors(n: int, zygote_rss: int | None) -> dict:
    """Fork, exit and reap of a process the zygote's size; a child's start and exit (bench/floors.py)."""
    proc = subprocess.run([sys.executable, "-m", "bench.floors", str(n), str(zygote_rss or 0)],
                          capture_output=True, text=True, cwd=HERE.parent, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.floors failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def server_floors(bench, n: int, done_doc: dict | None, batch: int = 100) -> dict:
    """What the server under test spends, in CPU ms per document, on the least a run needs of
    it, with nothing else running: a new task written through validate_doc_update (the
    user's POST), an update of it (the claim; the outcome costs the same), one feed read of a
    document (what a worker's feed pays per change, and per echo of its own writes), and one
    HTTP request alone. Documents are written in batches of `batch` (the marginal cost of a
    document: the floor), shaped like a finished bench task (`done_doc`, from the
    throughput run) so the size that validation and the feed handle is the real one."""
    if bench.server.cpu_s() is None:
        return {"measured": False}
    couch = bench.database("floors")
    me = f"{WORKER}:{HOST}:9"
    shape = {k: v for k, v in (done_doc or {}).items() if not k.startswith("_")}
    if not shape:
        shape = task("noop", time.time() + 86400, {})
        shape.update(status="done", result=None, runs=1, started_at=shape["date"], finished_at=shape["date"],
                     owner={"process": me, "host": HOST, "pid": 1}, anchor=shape["date"], occurrence=0)
    new = [{**shape, "status": "waiting", "worker": "floor"} for _ in range(n)]
    for d in new:
        d.pop("owner", None)

    def cpu_per_doc(write) -> float:
        c0 = bench.server.cpu_s()
        count = write()
        return (bench.server.cpu_s() - c0) / count * 1000

    revs = []

    def write_new():
        for i in range(0, n, batch):
            revs.extend(r for r in couch.bulk(new[i:i + batch]) if "rev" in r)
        return n

    def write_update():
        docs = [{**shape, "_id": r["id"], "_rev": r["rev"], "worker": "floor",
                 "owner": {"process": me, "host": HOST, "pid": 1}} for r in revs]
        for i in range(0, len(docs), batch):
            bad = [r for r in couch.bulk(docs[i:i + batch]) if "rev" not in r]
            if bad:
                raise RuntimeError(f"floor update refused: {bad[:2]}")
        return len(docs)

    def feed_read():
        since, got = 0, 0
        selector = {"$or": [{"worker": "floor"}, {"_deleted": True}, {"owner.process": me}]}
        while True:
            results, since = couch.changes(since, selector=selector, limit=1000, deadline_s=120)
            if not results:
                return got
            got += len(results)
            if got >= n:
                return got

    def requests_alone():
        k = 100
        for _ in range(k):
            couch.update_seq()
        return k

    out = {"measured": True, "docs": n, "batch": batch,
           "write_new_ms": cpu_per_doc(write_new), "write_update_ms": cpu_per_doc(write_update),
           "feed_read_ms": cpu_per_doc(feed_read), "request_ms": cpu_per_doc(requests_alone)}
    bench.done_with(couch)
    return out


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
    bench.done_with(couch)
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
    bench.done_with(empty)
    couch = bench.database("scale")
    far_s = time.time() + 30 * 86400
    batch = []
    for i in range(n):
        batch.append(owned_scheduled_task(ms_epoch(far_s + i)))
        if len(batch) == 10_000:
            post(couch, batch)
            batch = []
    post(couch, batch)
    ready, worker_cpu, server_cpu = [], [], []
    rss = None
    for _ in range(starts):
        w = bench.worker(couch, "scale", concurrency)
        t0, server0 = time.monotonic(), bench.server.cpu_s()
        try:
            w.start(timeout_s=600)
            ready.append(time.monotonic() - t0)
            # Where the start-up went: the worker's own CPU (parsing, deciding) and the server's
            # (reading every document, matching the selector), both until READY.
            split = cpu_split(w.proc.pid, None)
            worker_cpu.append(split.get("worker_process"))
            if server0 is not None:
                server_cpu.append(bench.server.cpu_s() - server0)
            if rss is None:
                time.sleep(SETTLE_S)
                rss = rss_bytes(w.proc.pid)
                armed = "%d armed" % n in w.log()
        finally:
            w.stop(timeout_s=120)
    bench.done_with(couch)
    return {"ready_s": sorted(ready)[len(ready) // 2], "ready_all_s": ready, "rss_empty_bytes": rss_empty,
            "rss_bytes": rss, "bytes_per_task": (rss - rss_empty) / n, "all_armed": armed,
            "worker_cpu_s_to_ready": worker_cpu, "server_cpu_s_to_ready": server_cpu}


def state_bytes(n: int) -> dict:
    """The worker's in-memory state for n pending tasks, built by its own code, in a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "bench.memstate", str(n)], capture_output=True, text=True,
                          cwd=HERE.parent, timeout=1800, env={**os.environ, "AFTER_CONFIG": os.devnull})
    if proc.returncode != 0:
        raise RuntimeError(f"bench.memstate failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def periodic(bench, window_s: float, concurrency: int) -> dict:
    """One task repeating every second for window_s ({"repeat": {"seconds": 1}}): missed and
    doubled occurrences, counted as for the peers (from the runs' starts alone, see
    bench.peers.measure.periodic_gaps) and exactly (each occurrence's own date)."""
    from bench.peers.measure import periodic_gaps

    couch = bench.database("periodic")
    out = bench.work_dir / f"ticks-{couch.database}.txt"
    w = bench.worker(couch, "periodic", concurrency)
    count = int(window_s) + 1
    try:
        w.start(timeout_s=60)
        first_s = ms_epoch(time.time() + LEAD_S)
        post(couch, [task("tick", first_s, {"out": str(out)}, repeat={"seconds": 1, "count": count})])
        deadline = time.monotonic() + (first_s - time.time()) + window_s + STALL_S
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= count:
                break
            time.sleep(0.2)
    finally:
        w.stop()
    bench.done_with(couch)
    rows = [line.split() for line in out.read_text().splitlines()] if out.exists() else []
    dates = Counter(round(float(at), 3) for _, at, _ in rows)
    expected = {round(first_s + k, 3) for k in range(count)}
    late_ms = [(float(started) - float(at)) * 1000 for _, at, started in rows]
    return {"expected": count, **periodic_gaps([float(started) for _, _, started in rows]),
            "missed_by_date": len(expected - set(dates)), "doubled_by_date": sum(1 for c in dates.values() if c > 1),
            "p99_ms": percentile(late_ms, 99) if late_ms else None}


def kill(bench, n: int, window_s: float, concurrency: int) -> dict:
    """n stamp tasks due across window_s; kill -9 of the worker process halfway (its zygote
    follows it; runs already forked finish and journal their outcome), another started at
    once; runs lost and run twice, by the jobs' own lines, and the runs the worker reports
    cut (`Interrupted`: begun, their end unknown, never run again)."""
    couch = bench.database("kill")
    out = bench.work_dir / f"stamps-{couch.database}.txt"
    statuses = Statuses(couch)
    w = bench.worker(couch, "kill", concurrency)
    try:
        w.start(timeout_s=60)
        first_s = ms_epoch(time.time() + LEAD_S + n * CLAIM_S_PER_TASK)
        docs = [task("stamp", at, {"out": str(out), "at": at})
                for at in (ms_epoch(first_s + i * window_s / n) for i in range(n))]
        ids = [f"kill-{i:05d}" for i in range(n)]
        for doc, doc_id in zip(docs, ids):
            doc["_id"] = doc_id
        post(couch, docs)
        _wait_claimed(statuses, n, first_s)
        time.sleep(max(0.0, first_s + window_s / 2 - time.time()))
        ran_before = len(out.read_text().splitlines()) if out.exists() else 0
        w.kill()
        w.start(timeout_s=60)
        final = {}
        deadline = time.monotonic() + max(0.0, first_s + window_s - time.time()) + 120
        while time.monotonic() < deadline:
            seen = Statuses(couch, with_docs=True).refresh()
            final = {k: v for k, v in seen.status.items() if v in ("done", "error")}
            if len(final) >= n:
                break
            time.sleep(0.5)
    finally:
        w.stop()
    interrupted = sum(1 for v in final.values() if v == "error")
    bench.done_with(couch)
    ran = Counter(line.split()[0] for line in (out.read_text().splitlines() if out.exists() else []))
    return {"lost": sum(1 for k in ids if ran[k] == 0), "doubled": sum(1 for k in ids if ran[k] > 1),
            "ran_before_kill": ran_before, "final": len(final), "interrupted": interrupted}
