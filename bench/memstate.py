"""The worker's in-memory state for N pending tasks, measured in a process of its own.

`python -m bench.memstate N` builds what a worker holds after loading N pending
tasks, by the worker's own code: each document is parsed from JSON text (as
from CouchDB) and handed to Worker._decide, which arms it. Prints JSON: RSS
before and after, and the bytes per task. No CouchDB and no threads: the
figure is the state alone, without the documents of a loading batch.
"""

import gc
import json
import sys
import time
from pathlib import Path

from afterd.claims import Identity
from afterd.config import Settings
from afterd.worker import Worker
from bench.harness import HOST, WORKER, ms_epoch, rss_bytes
from bench.measure import owned_scheduled_task


def main(n: int) -> dict:
    worker = Worker(WORKER, Settings(state_dir=Path("/nonexistent"), host=HOST))
    worker.me = Identity(WORKER, HOST, 0, 1)
    far_s = time.time() + 30 * 86400
    template = owned_scheduled_task(far_s)
    # Realistic ids and revs: CouchDB's are 32 hex digits.
    texts = (json.dumps({**template, "_id": f"{i:032x}", "_rev": f"2-{i * 7919:032x}",
                         "date": template["date"][:-1] + "Z"}) for i in range(n))
    gc.collect()
    before = rss_bytes("self")
    started = time.perf_counter()
    for i, text in enumerate(texts):
        doc = json.loads(text)
        doc["date"] = _date(far_s + i)
        worker._decide(doc)
    took_s = time.perf_counter() - started
    gc.collect()
    after = rss_bytes("self")
    if len(worker.timers) != n:
        raise SystemExit(f"only {len(worker.timers)} of {n} tasks armed")
    return {"n": n, "rss_before_bytes": before, "rss_after_bytes": after,
            "bytes_per_task": (after - before) / n, "decide_us_per_task": took_s / n * 1e6}


def _date(epoch_s):
    from afterd.task import format_date
    from bench.harness import utc

    return format_date(utc(ms_epoch(epoch_s)))


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
