"""`python -m bench [--quick] [--only NAME ...]`: measure after (and APScheduler), print a table,
write bench/results.json. The method is in docs/benchmarks.md.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench import compare, measure
from bench.harness import Bench, load_average

RESULTS = Path(__file__).resolve().parent / "results.json"

# Sizes: (full, quick). Quick keeps every key with smaller N, for everyday use (a few minutes).
SIZES = {
    "lateness_n": (10_000, 1_000), "lateness_window_s": (10.0, 2.0), "lateness_repeats": (3, 1),
    "throughput_n": (20_000, 2_000), "throughput_repeats": (3, 1),
    "backlog_n": (6_000, 1_000),
    "paced_n": (600, 150), "paced_window_s": (20.0, 5.0),
    "post_samples": (300, 40),
    "scale_n": (100_000, 10_000), "scale_starts": (3, 1),
    "state_n": (1_000_000, 100_000),
    "floor_forks": (3_000, 1_000), "floor_docs": (2_000, 500),
    "periodic_s": (60.0, 15.0), "kill_n": (1_000, 1_000), "kill_window_s": (10.0, 5.0),
}
MEASUREMENTS = ["throughput", "floors", "backlog", "lateness", "paced", "aps", "post", "periodic", "kill",
                "peers", "scale", "state"]
# Runs at once. The default is the CPU count (2 here); the bench allows more, so a slow
# run does not hold back the next one's start (each is still its own process).
CONCURRENCY = 16

# Issue 16: ratios to the floors measured in the same run, on either server.
TARGETS = {  # key -> (limit, "<=" or ">=")
    "cost_vs_floor": (1.6, "<="), "runs_per_s": (500.0, ">="), "post_to_scheduled_p99_ms": (50.0, "<="),
    "paced_p99_vs_aps": (1.5, "<="), "backlog_drain_vs_steady": (0.9, ">="),
    "backlog_out_of_order": (0.01, "<="),
    "rss_bytes_per_pending_task_1m": (600.0, "<="), "ready_s_100k": (10.0, "<="),
}
RUNS_PER_S_TARGET = {"pouchdb-server": 500.0, "couchdb": 400.0}


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def attempt(results: dict, name: str, measurement):
    """Run one measurement; a failure is recorded in results["errors"] and the others still run."""
    try:
        measurement()
    except Exception as e:  # noqa: BLE001 - any failure of one measurement is a figure to report
        results.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
        print(f"{name}: failed: {type(e).__name__}: {e}")


def run(quick: bool, only: set[str] | None, keep: bool = False, repeats: int | None = None,
        peers: set[str] | None = None) -> dict:
    size = {k: v[1] if quick else v[0] for k, v in SIZES.items()}
    if repeats:
        size.update(lateness_repeats=repeats, throughput_repeats=repeats)
    wanted = (lambda name: only is None or name in only)
    results: dict = {"quick": quick, "cpu_count": os.cpu_count(), "load_average_before": load_average(),
                     "concurrency": CONCURRENCY, "sizes": size,
                     "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="after-bench-") as tmp:
        work = Path(tempfile.mkdtemp(prefix="after-bench-")) if keep else Path(tmp)
        bench = Bench(work)
        results["server"] = bench.server.info
        print(f"measuring {bench.server.info['kind']} {bench.server.info['version']} at {bench.server.safe_url}",
              flush=True)
        done_doc = None
        try:
            if wanted("throughput"):
                def step():
                    nonlocal done_doc
                    runs = [measure.throughput(bench, size["throughput_n"], CONCURRENCY)
                            for _ in range(size["throughput_repeats"])]
                    done_doc = runs[-1].pop("done_doc")
                    for r in runs:
                        r.pop("done_doc", None)
                    results.update(runs_per_s=median_of(runs, "runs_per_s"),
                                   worker_cpu_ms_per_task=median_of(runs, "worker_cpu_ms_per_task"),
                                   throughput_runs=runs)
                    for part in ("worker_process", "zygote", "jobs"):
                        if all(f"{part}_cpu_ms_per_task" in r for r in runs):
                            results[f"{part}_cpu_ms_per_task"] = median_of(runs, f"{part}_cpu_ms_per_task")
                    sizes = [r["zygote_rss_bytes"] for r in runs if r["zygote_rss_bytes"]]
                    results["zygote_rss_bytes"] = max(sizes) if sizes else None
                    cost = results["worker_cpu_ms_per_task"]
                    if all(r["server_cpu_ms_per_task"] is not None for r in runs):
                        results["server_cpu_ms_per_task"] = median_of(runs, "server_cpu_ms_per_task")
                        cost += results["server_cpu_ms_per_task"]
                    # All processes, per run: worker, zygote, jobs and (when it can be seen) the server.
                    results["cost_per_run_ms"] = cost
                    # What otherwise idle cores could sustain: the CPU spent from the due moment
                    # to the last outcome (the runs, their outcomes, the bench's looks; not the
                    # POSTs and claims before), per run, against the CPU count.
                    results["run_cpu_ms_per_task"] = median_of(runs, "run_cpu_ms_per_task")
                    results["runs_per_s_cpu_bound"] = os.cpu_count() * 1000 / results["run_cpu_ms_per_task"]
                attempt(results, "throughput", step)
            if wanted("floors"):
                def step():
                    procs = measure.process_floors(size["floor_forks"], results.get("zygote_rss_bytes"))
                    server = measure.server_floors(bench, size["floor_docs"], done_doc)
                    results["floors"] = {"process": procs, "server": server}
                    results.update(floor_fork_exit_reap_ms=procs["fork_exit_reap_ms"],
                                   floor_child_start_exit_ms=procs["child_start_exit_ms"])
                    floor = procs["fork_exit_reap_ms"] + procs["child_start_exit_ms"]
                    if server["measured"]:
                        results.update(floor_write_new_ms=server["write_new_ms"],
                                       floor_write_update_ms=server["write_update_ms"],
                                       floor_feed_read_ms=server["feed_read_ms"],
                                       floor_request_ms=server["request_ms"])
                        # The least a run costs the server: the user's POST, the claim and the
                        # outcome written through validation, and the worker's feed reading the task once.
                        floor += server["write_new_ms"] + 2 * server["write_update_ms"] + server["feed_read_ms"]
                    results["floor_per_run_ms"] = floor
                    if "cost_per_run_ms" in results and floor > 0:
                        results["cost_vs_floor"] = results["cost_per_run_ms"] / floor
                attempt(results, "floors", step)
            if wanted("backlog"):
                def step():
                    got = measure.backlog(bench, size["backlog_n"], CONCURRENCY)
                    results.update(backlog_steady_starts_per_s=got["steady_starts_per_s"],
                                   backlog_drain_starts_per_s=got["starts_per_s"],
                                   backlog_drain_vs_steady=got["drain_vs_steady"],
                                   backlog_done_vs_steady=got["done_vs_steady"],
                                   backlog_cpu_rate_vs_steady=got.get("cpu_rate_vs_steady"),
                                   backlog_order_max_displacement=got["order_max_displacement"],
                                   backlog_out_of_order=got["order_displaced_beyond_slots"],
                                   backlog_order_max_inversion_ms=got["order_max_inversion_ms"],
                                   backlog_lateness_max_ms=got["max_ms"], backlog=got)
                attempt(results, "backlog", step)
            if wanted("lateness"):
                def step():
                    runs = [measure.lateness(bench, size["lateness_n"], size["lateness_window_s"], CONCURRENCY)
                            for _ in range(size["lateness_repeats"])]
                    results.update(lateness_p50_ms=median_of(runs, "p50_ms"), lateness_p99_ms=median_of(runs, "p99_ms"),
                                   lateness_max_ms=median_of(runs, "max_ms"), lateness_runs=runs)
                attempt(results, "lateness", step)
            if wanted("paced"):
                def step():
                    # The same measurement at a rate this machine sustains (see runs_per_s_cpu_bound):
                    # how precise the start is when runs do not queue.
                    got = measure.lateness(bench, size["paced_n"], size["paced_window_s"], CONCURRENCY)
                    results.update(paced_lateness_p50_ms=got["p50_ms"], paced_lateness_p99_ms=got["p99_ms"],
                                   paced_lateness_max_ms=got["max_ms"],
                                   paced_rate_per_s=size["paced_n"] / size["paced_window_s"])
                attempt(results, "paced", step)
            if wanted("aps"):
                def step():
                    # APScheduler at the paced rate (the like-for-like peer of paced_*), and
                    # at the lateness load (10,000 over 10 s).
                    got = measure.aps_lateness(size["paced_n"], size["paced_window_s"])
                    results.update(aps_paced_lateness_p50_ms=got["p50_ms"], aps_paced_lateness_p99_ms=got["p99_ms"])
                    if "paced_lateness_p99_ms" in results:
                        results["paced_p99_vs_aps"] = results["paced_lateness_p99_ms"] / got["p99_ms"]
                    runs = [measure.aps_lateness(size["lateness_n"], size["lateness_window_s"])
                            for _ in range(size["lateness_repeats"])]
                    results.update(aps_lateness_p50_ms=median_of(runs, "p50_ms"),
                                   aps_lateness_p99_ms=median_of(runs, "p99_ms"),
                                   aps_lateness_max_ms=median_of(runs, "max_ms"), aps_runs=runs)
                    if "lateness_p99_ms" in results:
                        results["lateness_p99_vs_aps"] = results["lateness_p99_ms"] / results["aps_lateness_p99_ms"]
                attempt(results, "aps", step)
            if wanted("post"):
                def step():
                    got = measure.post_to_scheduled(bench, size["post_samples"], CONCURRENCY)
                    results.update(post_to_scheduled_p50_ms=got["p50_ms"], post_to_scheduled_p99_ms=got["p99_ms"])
                attempt(results, "post", step)
            if wanted("periodic"):
                def step():
                    results["periodic"] = measure.periodic(bench, size["periodic_s"], CONCURRENCY)
                attempt(results, "periodic", step)
            if wanted("kill"):
                def step():
                    results["kill"] = measure.kill(bench, size["kill_n"], size["kill_window_s"], CONCURRENCY)
                attempt(results, "kill", step)
            if wanted("peers"):
                def step():
                    from bench.peers.measure import run_all
                    print("measuring the peers: Huey and Celery", flush=True)
                    results["peers"] = run_all(work / "peers", size, peers)
                attempt(results, "peers", step)
            if wanted("scale"):
                def step():
                    got = measure.scale(bench, size["scale_n"], CONCURRENCY, size["scale_starts"])
                    results.update(rss_bytes_per_pending_task_100k=got["bytes_per_task"], ready_s_100k=got["ready_s"],
                                   scale=got)
                attempt(results, "scale", step)
            if wanted("state"):
                def step():
                    got = measure.state_bytes(size["state_n"])
                    results.update(rss_bytes_per_pending_task_1m=got["bytes_per_task"], state=got)
                attempt(results, "state", step)
        finally:
            bench.close(keep)
            if keep:
                print(f"kept: {work} (worker logs, job stamps, the server's data)")
    results["load_average_after"] = load_average()
    return results


def targets(results: dict) -> dict:
    wanted = dict(TARGETS)
    kind = results.get("server", {}).get("kind")
    wanted["runs_per_s"] = (RUNS_PER_S_TARGET.get(kind, 500.0), ">=")
    return wanted


ROWS = [  # (key, unit); a group title when unit is None
    ("cost of a run (CPU of every process, per run)", None),
    ("cost_per_run_ms", "ms"), ("worker_cpu_ms_per_task", "ms"),
    ("worker_process_cpu_ms_per_task", "ms"), ("zygote_cpu_ms_per_task", "ms"), ("jobs_cpu_ms_per_task", "ms"),
    ("server_cpu_ms_per_task", "ms"),
    ("floor_per_run_ms", "ms"), ("floor_fork_exit_reap_ms", "ms"), ("floor_child_start_exit_ms", "ms"),
    ("floor_write_new_ms", "ms"), ("floor_write_update_ms", "ms"), ("floor_feed_read_ms", "ms"),
    ("floor_request_ms", "ms"), ("cost_vs_floor", "x"),
    ("throughput and backlog", None),
    ("runs_per_s", "/s"), ("run_cpu_ms_per_task", "ms"), ("runs_per_s_cpu_bound", "/s"), ("backlog_steady_starts_per_s", "/s"),
    ("backlog_drain_starts_per_s", "/s"), ("backlog_drain_vs_steady", "x"), ("backlog_done_vs_steady", "x"),
    ("backlog_cpu_rate_vs_steady", "x"), ("backlog_out_of_order", "x"),
    ("backlog_order_max_displacement", "runs"), ("backlog_order_max_inversion_ms", "ms"), ("backlog_lateness_max_ms", "ms"),
    ("start lateness: after and APScheduler in the same run", None),
    ("paced_lateness_p50_ms", "ms"), ("paced_lateness_p99_ms", "ms"), ("aps_paced_lateness_p50_ms", "ms"),
    ("aps_paced_lateness_p99_ms", "ms"), ("paced_p99_vs_aps", "x"),
    ("lateness_p50_ms", "ms"), ("lateness_p99_ms", "ms"), ("aps_lateness_p50_ms", "ms"), ("aps_lateness_p99_ms", "ms"),
    ("lateness_p99_vs_aps", "x"),
    ("POST to scheduled, memory, start-up", None),
    ("post_to_scheduled_p50_ms", "ms"), ("post_to_scheduled_p99_ms", "ms"),
    ("rss_bytes_per_pending_task_100k", "B"), ("rss_bytes_per_pending_task_1m", "B"), ("ready_s_100k", "s"),
]


def table(results: dict) -> str:
    limits = targets(results)
    server = results.get("server", {})
    lines = [f"server: {server.get('kind', '?')} {server.get('version', '?')}"
             f"{' (' + server['vendor'] + ')' if server.get('vendor') else ''} at {server.get('url', '?')}"
             f"{'' if server.get('cpu_measured', True) else '; its CPU cannot be seen from here: not in the costs'}",
             f"{'figure':34} {'value':>12}  {'target':>10}  ok",
             f"{'-' * 34} {'-' * 12}  {'-' * 10}  --"]
    for key, unit in ROWS:
        if unit is None:
            lines.append(f"[{key}]")
            continue
        value = results.get(key)
        if value is None:
            continue
        limit, sense = limits.get(key, (None, ""))
        target = f"{sense} {limit:g}" if limit is not None else ""
        ok = "" if limit is None else ("yes" if (value <= limit if sense == "<=" else value >= limit) else "NO")
        lines.append(f"{key:34} {value:>12.2f}  {target:>10}  {ok}")
    s = results["sizes"]
    lines.append(f"cpus {results['cpu_count']}, load {results['load_average_before']} -> "
                 f"{results['load_average_after']}; {'quick' if results['quick'] else 'full'}: "
                 f"throughput {s['throughput_n']} x{s['throughput_repeats']}, backlog {s['backlog_n']}, "
                 f"lateness {s['lateness_n']} over {s['lateness_window_s']:g}s x{s['lateness_repeats']}, "
                 f"paced {s['paced_n']} over {s['paced_window_s']:g}s, RSS/ready at {s['scale_n']} "
                 f"(the _100k keys), state at {s['state_n']} (the _1m key)")
    for name, error in results.get("errors", {}).items():
        lines.append(f"FAILED {name}: {error}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, a few minutes, same keys")
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS,
                        help="run only these measurements (while developing)")
    parser.add_argument("--repeats", type=int, help="repeat lateness, APScheduler and throughput this often "
                        "(default: 3, quick: 1)")
    parser.add_argument("--peers", nargs="+", choices=["huey", "celery"],
                        help="with --only peers: only these peers")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) for a look afterwards")
    args = parser.parse_args()
    results = run(args.quick, set(args.only) if args.only else None, args.keep, args.repeats,
                  set(args.peers) if args.peers else None)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(compare.table(results))
    print(f"written: {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
