"""The parts every measurement shares: a pouchdb-server, real `after start` workers, bulk posting."""

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
from couchdb_server import PouchServer  # noqa: E402
from workers import WorkerProcess  # noqa: E402

from afterd.couch import Couch  # noqa: E402
from afterd.task import format_date  # noqa: E402

POST_CHUNK = 1000          # documents per _bulk_docs when loading tasks
POLL_S = 0.05
WORKER = "bench"
HOST = "benchhost"         # AFTER_HOST: fixes the worker's identity, bench:benchhost:0


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def ms_epoch(epoch_s: float) -> float:
    """Round to the millisecond, as a task date carries it."""
    return round(epoch_s * 1000) / 1000


class Bench:
    """One pouchdb-server (LevelDB in a temporary folder) for the whole run."""

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)
        self.server = PouchServer(self.work_dir / "couch").start()
        self._dbs = 0

    def database(self, prefix: str) -> Couch:
        self._dbs += 1
        couch = Couch(self.server.url, f"{prefix}-{self._dbs}", timeout_s=120)
        couch.ensure_database()
        couch.ensure_design()
        return couch

    def worker(self, couch: Couch, tag: str, concurrency: int, **env) -> WorkerProcess:
        state = self.work_dir / f"state-{tag}-{couch.database}"
        settings = {"AFTER_CONCURRENCY": str(concurrency), "AFTER_HOST": HOST,
                    **{k: str(v) for k, v in env.items()}}
        return WorkerProcess(WORKER, self.server.url, couch.database, state, jobs_dir=BENCH_JOBS,
                             env=settings, log_path=self.work_dir / f"{tag}-{couch.database}.log")

    def close(self):
        self.server.remove()


def post(couch: Couch, docs: list[dict]) -> None:
    for i in range(0, len(docs), POST_CHUNK):
        results = couch.bulk(docs[i:i + POST_CHUNK])
        bad = [r for r in results if "rev" not in r]
        if bad:
            raise RuntimeError(f"posting tasks failed: {bad[:3]}")


def task(job: str, date_s: float, arguments: dict, **fields) -> dict:
    return {"worker": WORKER, "date": format_date(utc(date_s)), "status": "waiting",
            "job": {"name": job, "arguments": arguments}, **fields}


def count(couch: Couch, status: str) -> int:
    rows = couch.view("by_status", group=True, key=status)["rows"]
    return rows[0]["value"] if rows else 0


def wait_count(couch: Couch, status: str, n: int, timeout_s: float) -> float:
    """Wait until n tasks have `status`; the time (epoch) it was first seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if count(couch, status) >= n:
            return time.time()
        time.sleep(POLL_S)
    raise RuntimeError(f"only {count(couch, status)} of {n} tasks reached {status} in {timeout_s:.0f}s")


def rss_bytes(pid) -> int:
    """VmRSS of a process (a pid, or "self")."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
