"""The bench runs end to end on a tiny size, on the server the tests use.

Only that it runs and reports every key, with the server it measured: never a time
(the bench, not the tests, compares figures with targets).
"""

import json
import os

import pytest

from bench import __main__ as bench_main
from bench.measure import start_order
from bench.server import describe

TINY = {"throughput_n": (60, 60), "throughput_repeats": (1, 1), "backlog_n": (60, 60),
        "floor_forks": (50, 50), "floor_docs": (40, 40), "post_samples": (3, 3)}


def test_start_order_counts_runs_started_out_of_date_order():
    # (date, start): the run due at 2 started after the one due at 3.
    got = start_order([(1.0, 1.0), (2.0, 3.5), (3.0, 3.0), (4.0, 4.0)], concurrency=0)
    assert got["order_max_displacement"] == 1
    assert got["order_displaced_beyond_slots"] == 0.5
    assert got["order_max_inversion_ms"] == pytest.approx(500.0)
    assert start_order([(1.0, 1.0), (2.0, 2.0)], concurrency=16)["order_max_inversion_ms"] == 0


def test_describe_names_the_server_and_its_version():
    assert describe({"couchdb": "Welcome", "version": "3.4.3", "vendor": {"name": "The Apache Software Foundation"}}) \
        == {"kind": "couchdb", "version": "3.4.3", "vendor": "The Apache Software Foundation"}
    assert describe({"express-pouchdb": "Welcome!", "version": "4.2.0"})["kind"] == "pouchdb-server"


def test_quick_bench_runs_end_to_end_on_a_tiny_size(monkeypatch):
    # Given the bench at a tiny size, on the tests' server when they use a real CouchDB
    for key, value in TINY.items():
        monkeypatch.setitem(bench_main.SIZES, key, value)
    if os.environ.get("AFTER_TEST_COUCHDB_URL"):
        monkeypatch.setenv("AFTER_BENCH_COUCHDB_URL", os.environ["AFTER_TEST_COUCHDB_URL"])
    # When it measures the cost of a run, its floors, a backlog and POST -> scheduled
    results = bench_main.run(quick=True, only={"throughput", "floors", "backlog", "post"})
    # Then every key is there, with which server it measured, and no password anywhere
    assert "errors" not in results, results.get("errors")
    assert results["server"]["kind"] in ("pouchdb-server", "couchdb")
    assert results["server"]["version"]
    for key in ("runs_per_s", "worker_cpu_ms_per_task", "cost_per_run_ms", "floor_per_run_ms", "cost_vs_floor",
                "floor_fork_exit_reap_ms", "backlog_drain_vs_steady", "backlog_out_of_order",
                "post_to_scheduled_p99_ms"):
        assert key in results, key
    text = json.dumps(results) + bench_main.table(results)
    assert "server:" in bench_main.table(results)
    url = os.environ.get("AFTER_TEST_COUCHDB_URL", "")
    if "@" in url and ":" in url.split("@")[0].split("//")[-1]:
        assert url.split("@")[0].split(":")[-1] not in text
