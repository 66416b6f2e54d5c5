"""Celery with a Redis broker: `celery -A bench.peers.celery_app worker` (and `beat`).

BENCH_REDIS_URL: the broker. BENCH_CELERY_SETTINGS: `defaults` (Celery's own) or
`recommended` (what its documentation recommends when a task must not be lost to a
worker's crash: late acknowledgement, re-queued when the worker process is lost, one
message reserved per process). BENCH_TICK_OUT: where beat's every-second task stamps.
"""

import os

from celery import Celery

from bench.peers.stamp import stamp as _stamp

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(worker_hijack_root_logger=False)
if os.environ.get("BENCH_CELERY_SETTINGS") in ("recommended", "process-per-run"):
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1)
if os.environ.get("BENCH_TICK_OUT"):
    app.conf.beat_schedule = {"tick": {"task": "bench.peers.celery_app.stamp", "schedule": 1.0,
                                       "args": (os.environ["BENCH_TICK_OUT"], "tick", 0.0)}}


@app.task
def stamp(out: str, key: str, at: float) -> None:
    _stamp(out, key, at)
