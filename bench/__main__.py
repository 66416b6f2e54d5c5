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

from bench import measure
from bench.harness import Bench, load_average

RESULTS = Path(__file__).resolve().parent / "results.json"

# Sizes: (full, quick). Quick keeps every key with smaller N, for everyday use (< 1 min).
SIZES = {
    "lateness_n": (10_000, 1_000), "lateness_window_s": (10.0, 2.0), "lateness_repeats": (3, 1),
    "throughput_n": (20_000, 2_000), "throughput_repeats": (3, 1),
    "paced_n": (600, 150), "paced_window_s": (20.0, 5.0),
    "post_samples": (300, 40),
    "scale_n": (100_000, 10_000), "scale_starts": (3, 1),
    "state_n": (1_000_000, 100_000),
}
# Runs at once. The default is the CPU count (2 here); the bench allows more, so a slow
# run does not hold back the next one's start (each is still its own process).
CONCURRENCY = 16

TARGETS = {  # key -> (limit, "<=" or ">=")
    "lateness_p50_ms": (1.0, "<="), "lateness_p99_ms": (5.0, "<="), "lateness_p99_vs_aps": (1.5, "<="),
    "runs_per_s": (1000.0, ">="), "post_to_scheduled_p99_ms": (50.0, "<="),
    "rss_bytes_per_pending_task_1m": (600.0, "<="), "ready_s_100k": (10.0, "<="),
}


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def attempt(results: dict, name: str, measurement):
    """Run one measurement; a failure is recorded in results["errors"] and the others still run."""
    try:
        measurement()
    except Exception as e:  # noqa: BLE001 - any failure of one measurement is a figure to report
        results.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
        print(f"{name}: failed: {type(e).__name__}: {e}")


def run(quick: bool, only: set[str] | None, keep: bool = False, repeats: int | None = None) -> dict:
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
        try:
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
                    runs = [measure.aps_lateness(size["lateness_n"], size["lateness_window_s"])
                            for _ in range(size["lateness_repeats"])]
                    results.update(aps_lateness_p50_ms=median_of(runs, "p50_ms"),
                                   aps_lateness_p99_ms=median_of(runs, "p99_ms"),
                                   aps_lateness_max_ms=median_of(runs, "max_ms"), aps_runs=runs)
                    if "lateness_p99_ms" in results:
                        results["lateness_p99_vs_aps"] = results["lateness_p99_ms"] / results["aps_lateness_p99_ms"]
                attempt(results, "aps", step)
            if wanted("throughput"):
                def step():
                    runs = [measure.throughput(bench, size["throughput_n"], CONCURRENCY)
                            for _ in range(size["throughput_repeats"])]
                    results.update(runs_per_s=median_of(runs, "runs_per_s"),
                                   worker_cpu_ms_per_task=median_of(runs, "worker_cpu_ms_per_task"),
                                   server_cpu_ms_per_task=median_of(runs, "server_cpu_ms_per_task"),
                                   throughput_runs=runs)
                    # What two otherwise idle cores could sustain at that CPU cost per task.
                    results["runs_per_s_cpu_bound"] = (os.cpu_count() * 1000 / (results["worker_cpu_ms_per_task"]
                                                                                + results["server_cpu_ms_per_task"]))
                attempt(results, "throughput", step)
            if wanted("post"):
                def step():
                    got = measure.post_to_scheduled(bench, size["post_samples"], CONCURRENCY)
                    results.update(post_to_scheduled_p50_ms=got["p50_ms"], post_to_scheduled_p99_ms=got["p99_ms"])
                attempt(results, "post", step)
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
            bench.server.stop()
            if keep:
                print(f"kept: {work} (worker logs, job stamps, the server's data)")
    results["load_average_after"] = load_average()
    return results


def table(results: dict) -> str:
    rows = [("lateness_p50_ms", "ms"), ("lateness_p99_ms", "ms"), ("lateness_max_ms", "ms"),
            ("aps_lateness_p50_ms", "ms"), ("aps_lateness_p99_ms", "ms"), ("lateness_p99_vs_aps", "x"),
            ("paced_lateness_p50_ms", "ms"), ("paced_lateness_p99_ms", "ms"), ("paced_lateness_max_ms", "ms"),
            ("runs_per_s", "/s"), ("worker_cpu_ms_per_task", "ms"), ("server_cpu_ms_per_task", "ms"),
            ("runs_per_s_cpu_bound", "/s"), ("post_to_scheduled_p50_ms", "ms"), ("post_to_scheduled_p99_ms", "ms"),
            ("rss_bytes_per_pending_task_100k", "B"), ("rss_bytes_per_pending_task_1m", "B"),
            ("ready_s_100k", "s")]
    lines = [f"{'figure':34} {'value':>12}  {'target':>10}  ok",
             f"{'-' * 34} {'-' * 12}  {'-' * 10}  --"]
    for key, unit in rows:
        if key not in results:
            continue
        value = results[key]
        limit, sense = TARGETS.get(key, (None, ""))
        target = f"{sense} {limit:g}" if limit is not None else ""
        ok = "" if limit is None else ("yes" if (value <= limit if sense == "<=" else value >= limit) else "NO")
        lines.append(f"{key:34} {value:>12.2f}  {target:>10}  {ok}")
    s = results["sizes"]
    lines.append(f"cpus {results['cpu_count']}, load {results['load_average_before']} -> "
                 f"{results['load_average_after']}; {'quick' if results['quick'] else 'full'}: "
                 f"lateness {s['lateness_n']} over {s['lateness_window_s']:g}s x{s['lateness_repeats']}, "
                 f"throughput {s['throughput_n']} x{s['throughput_repeats']}, RSS/ready at {s['scale_n']} "
                 f"(the _100k keys), state at {s['state_n']} (the _1m key)")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, under a minute, same keys")
    parser.add_argument("--only", nargs="+", choices=["lateness", "paced", "aps", "throughput", "post", "scale", "state"],
                        help="run only these measurements (while developing)")
    parser.add_argument("--repeats", type=int, help="repeat lateness, APScheduler and throughput this often "
                        "(default: 3, quick: 1)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) for a look afterwards")
    args = parser.parse_args()
    results = run(args.quick, set(args.only) if args.only else None, args.keep, args.repeats)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"written: {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
