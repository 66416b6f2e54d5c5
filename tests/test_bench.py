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


def test_periodic_gaps_count_missed_and_doubled_occurrences_from_starts_alone():
    from bench.peers.measure import periodic_gaps
    # Given runs of an every-second task: on time, then one second skipped, then one run twice
    starts = [0.0, 1.01, 2.0, 4.02, 5.0, 5.03, 6.0]
    got = periodic_gaps(starts)
    # Then the skip is one missed occurrence and the pair 30 ms apart one doubled
    assert (got["missed"], got["doubled"], got["runs"]) == (1, 1, 7)
    assert periodic_gaps([0.0, 1.0, 2.0])["missed"] == periodic_gaps([0.0, 1.0, 2.0])["doubled"] == 0


def test_lost_and_doubled_count_tasks_by_their_jobs_lines():
    from bench.peers.measure import lost_and_doubled
    rows = [("a", 1.0, 1.1), ("b", 2.0, 2.1), ("b", 2.0, 9.0)]
    assert lost_and_doubled(["a", "b", "c"], rows) == {"lost": 1, "doubled": 1}


def test_the_peers_table_puts_after_beside_each_peer_with_the_goals_as_ratios():
    from bench import compare
    # Given one run's results: after's figures and two peers' (Celery without a kill figure)
    peer = {"throughput": {"runs_per_s": 900.0, "cpu_ms_per_run": 1.0, "runs_per_cpu_s": 1000.0},
            "paced": {"p50_ms": 1.0, "p99_ms": 2.0}, "periodic": {"supported": False, "why": "a minute at the finest"},
            "kill": {"lost": 0, "doubled": 0, "orphans_left_running": 2, "unacked_in_redis": None}}
    results = {"runs_per_s": 450.0, "cost_per_run_ms": 4.0, "paced_lateness_p50_ms": 0.1,
               "paced_lateness_p99_ms": 0.3, "periodic": {"missed": 0, "doubled": 0},
               "kill": {"lost": 0, "doubled": 0}, "floor_per_run_ms": 2.5, "aps_paced_lateness_p50_ms": 0.2,
               "aps_paced_lateness_p99_ms": 1.5,
               "peers": {"versions": {"huey": "3.5.4"}, "settings": {"huey": {"defaults": "1 worker thread"}},
                         "figures": {"huey/defaults": peer,
                                     "celery/defaults": {"throughput": {"error": "RuntimeError: no redis"}}}}}
    # When the table is made
    text = compare.table(results)
    goals = compare.goals(results)
    # Then after, Huey and APScheduler are columns; the goals are this run's ratios
    assert "after" in text and "Huey" in text and "APScheduler" in text
    assert goals["runs_per_cpu_s_vs_best_peer"] == 0.25          # 250 runs per CPU-s against 1,000
    assert goals["paced_p99_vs_best_peer"] == 0.3 / 2.0           # Huey's: APScheduler persists nothing
    assert goals["kill_lost_and_doubled"] == 0
    # And what a peer cannot do, or what failed, is said, not hidden
    assert "a minute at the finest" in text and "FAILED celery/defaults throughput" in text
    assert "huey 3.5.4" in text and "1 worker thread" in text
