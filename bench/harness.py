"""The parts every measurement shares: a pouchdb-server, real `after start` workers, bulk posting."""

import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_JOBS = Path(__file__).resolve().parent / "jobs"

# The test suite's server and worker drivers, reused as they are (by path: tests/ is no package).
sys.path.insert(0, str(ROOT / "tests"))
from workers import WorkerProcess  # noqa: E402

from afterd.couch import Couch  # noqa: E402
from afterd.task import format_date  # noqa: E402
from bench.server import OwnPouch, open_server  # noqa: E402

POST_CHUNK = 1000          # documents per _bulk_docs when loading tasks
POLL_S = 0.2   # the end time is known to this much; each look costs pouchdb-server a request
WORKER = "bench"
HOST = "benchhost"         # AFTER_HOST: fixes the worker's identity, bench:benchhost:0


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def ms_epoch(epoch_s: float) -> float:
    """Round to the millisecond, as a task date carries it."""
    return round(epoch_s * 1000) / 1000


class Bench:
    """One server for the whole run: the bench's own pouchdb-server, or AFTER_BENCH_COUCHDB_URL."""

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)
        self.server = open_server(self.work_dir)

    def database(self, prefix: str) -> Couch:
        return self.server.database(prefix)

    def worker(self, couch: Couch, tag: str, concurrency: int, **env) -> WorkerProcess:
        state = self.work_dir / f"state-{tag}-{couch.database}"
        settings = {"AFTER_CONCURRENCY": str(concurrency), "AFTER_HOST": HOST,
                    **{k: str(v) for k, v in env.items()}}
        return WorkerProcess(WORKER, self.server.url, couch.database, state, jobs_dir=BENCH_JOBS,
                             env=settings, log_path=self.work_dir / f"{tag}-{couch.database}.log")

    def done_with(self, couch: Couch) -> None:
        """A measurement is over: an external server gets its space back at once."""
        if not isinstance(self.server, OwnPouch):
            self.server.drop(couch)

    def close(self, keep: bool = False):
        self.server.close(keep)


def post(couch: Couch, docs: list[dict]) -> None:
    for i in range(0, len(docs), POST_CHUNK):
        results = couch.bulk(docs[i:i + POST_CHUNK])
        bad = [r for r in results if "rev" not in r]
        if bad:
            raise RuntimeError(f"posting tasks failed: {bad[:3]}")


def task(job: str, date_s: float, arguments: dict, **fields) -> dict:
    return {"worker": WORKER, "date": format_date(utc(date_s)), "status": "waiting",
            "job": {"name": job, "arguments": arguments}, **fields}


class Statuses:
    """Every task's status, as CouchDB has it, followed through _changes (normal feed, from
    where the last look ended). Not a view: pouchdb-server indexes a view on the query, which
    takes seconds per 1,000 changes and stalls every other request meanwhile.

    Cheap by default: the feed without documents, so the bench's own look costs the server
    little (it is counted in the cost per run). A task's revision generation tells how far
    it got, as long as each step is one write: 1 = posted, 2 = claimed (`scheduled`),
    3 = its outcome (`done` for the bench's short jobs; a run past RUNNING_WRITE_HOLD_S
    writes `running` first). `verify()` reads the documents once at the end and checks
    that the statuses are what the generations said."""

    GENERATION = {"waiting": 1, "scheduled": 2, "done": 3}

    def __init__(self, couch: Couch, with_docs: bool = False):
        self.couch = couch
        self.with_docs = with_docs
        self.since = 0
        self.status: dict[str, str] = {}
        self.generation: dict[str, int] = {}

    def refresh(self) -> "Statuses":
        params = {"since": json.dumps(self.since) if isinstance(self.since, int) else self.since}
        if self.with_docs:
            params["include_docs"] = "true"
        body = self.couch._request("GET", self.couch._db_path + "/_changes", params=params,
                                   what="_changes", timeout=(120, 120)).json()
        for row in body["results"]:
            if row["id"].startswith(("_design/", "after:")):
                continue
            self.generation[row["id"]] = int(row["changes"][0]["rev"].split("-", 1)[0])
            if self.with_docs:
                self.status[row["id"]] = (row.get("doc") or {}).get("status")
        self.since = body["last_seq"]
        return self

    def count(self, status: str) -> int:
        if self.with_docs:
            return sum(1 for s in self.status.values() if s == status)
        want = self.GENERATION[status]
        return sum(1 for g in self.generation.values() if g >= want)

    def verify(self, status: str, n: int, wait_s: float = 0.0) -> float | None:
        """Read every task: n of them must have `status` (what count() inferred). With
        `wait_s`, read again until they do: a task whose run first confirmed its ownership
        (after a lapsed lease) wrote once more, so its generation said done one write early.
        The time all were seen, if that took a second look; None if the first one did."""
        deadline = time.monotonic() + wait_s
        first = True
        while True:
            seen = Statuses(self.couch, with_docs=True).refresh()
            if seen.count(status) >= n:
                return None if first else time.time()
            if time.monotonic() >= deadline:
                bad = sorted({s for s in seen.status.values() if s != status})
                raise RuntimeError(f"only {seen.count(status)} of {n} tasks are {status} (others: {bad})")
            first = False
            time.sleep(1.0)


def wait_count(statuses: Statuses, status: str, n: int, timeout_s: float) -> float:
    """Wait until n tasks have `status`; the time (epoch) it was first seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if statuses.refresh().count(status) >= n:
            return time.time()
        time.sleep(POLL_S)
    raise RuntimeError(f"only {statuses.count(status)} of {n} tasks reached {status} in {timeout_s:.0f}s")


def rss_bytes(pid) -> int:
    """VmRSS of a process (a pid, or "self")."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped descendants (a stopped worker, its zygote, its jobs)."""
    t = os.times()
    return t.children_user + t.children_system


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
