"""APScheduler 3.x under the same load: `python -m bench.aps N WINDOW_S` prints JSON figures.

BackgroundScheduler, date triggers, the default in-memory job store and thread
pool (10 threads). The job notes time.time() at its first line, as bench/jobs/stamp.py
does; lateness is that minus the job's run date.
"""

import json
import sys
import threading
import time
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from bench.harness import ms_epoch, percentile


def main(n: int, window_s: float) -> dict:
    stamps: list[tuple[float, float]] = []
    finished = threading.Event()

    def stamp(at_s):
        started = time.time()
        stamps.append((at_s, started))
        if len(stamps) >= n:
            finished.set()

    scheduler = BackgroundScheduler()
    scheduler.start()
    first_s = ms_epoch(time.time() + 1 + n * 0.0002)
    for i in range(n):
        at = ms_epoch(first_s + i * window_s / n)
        scheduler.add_job(stamp, "date", run_date=datetime.fromtimestamp(at, timezone.utc), args=[at],
                          misfire_grace_time=None)
    added_before_due = time.time() < first_s
    finished.wait(window_s + 120 + max(0.0, first_s - time.time()))
    scheduler.shutdown(wait=True)
    late_ms = [(t - at) * 1000 for at, t in stamps]
    if len(late_ms) < n:
        raise SystemExit(f"APScheduler ran only {len(late_ms)} of {n} jobs")
    return {"p50_ms": percentile(late_ms, 50), "p99_ms": percentile(late_ms, 99), "max_ms": max(late_ms),
            "added_before_due": added_before_due}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), float(sys.argv[2]))))
