"""Huey with SQLite storage (no server): the consumer runs `huey_consumer bench.peers.huey_app.huey`.

BENCH_HUEY_DB: the database file. Every setting the bench varies is a consumer option
(bench/peers/measure.py: SETTINGS), so this module is the same for all of them.
"""

import os

from huey import SqliteHuey

from bench.peers.stamp import stamp as _stamp

huey = SqliteHuey("bench", filename=os.environ.get("BENCH_HUEY_DB", "huey-bench.db"))


@huey.task()
def stamp(out: str, key: str, at: float) -> None:
    _stamp(out, key, at)
