"""after beside its peers in one table, from one bench run's results (pure: results in, text out).

Columns: after, then each peer with its defaults and with the settings its documentation
recommends (bench/peers/measure.py: SETTINGS), then APScheduler (start lateness only:
it keeps nothing on disk). The goals are ratios within the run (issue 24), against the
best of Huey and Celery.
"""

PEERS = [("huey/defaults", "Huey"), ("huey/recommended", "Huey rec."),
         ("celery/defaults", "Celery"), ("celery/recommended", "Celery rec."),
         ("celery/process-per-run", "Celery 1/proc")]
GOALS = {"runs_per_cpu_s_vs_best_peer": (1.0, ">="), "paced_p99_vs_best_peer": (0.1, "<="),
         "kill_lost_and_doubled": (0, "<=")}


def _num(x, digits=2) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def columns(results: dict) -> list[tuple[str, dict]]:
    """(title, figures) per column; figures use the same keys for all."""
    cost = results.get("cost_per_run_ms")
    periodic, kill = results.get("periodic") or {}, results.get("kill") or {}
    after = {"runs_per_s": results.get("runs_per_s"), "cpu_ms_per_run": cost,
             "runs_per_cpu_s": 1000 / cost if cost else None,
             "paced_p50_ms": results.get("paced_lateness_p50_ms"), "paced_p99_ms": results.get("paced_lateness_p99_ms"),
             "periodic": (periodic.get("missed"), periodic.get("doubled")) if periodic else None,
             "kill": (kill.get("lost"), kill.get("doubled")) if kill else None}
    out = [("after", after)]
    figures = (results.get("peers") or {}).get("figures", {})
    for key, title in PEERS:
        got = figures.get(key)
        if not got:
            continue
        t, p = got.get("throughput", {}), got.get("paced", {})
        per, k = got.get("periodic", {}), got.get("kill", {})
        out.append((title, {
            "runs_per_s": t.get("runs_per_s"), "cpu_ms_per_run": t.get("cpu_ms_per_run"),
            "runs_per_cpu_s": t.get("runs_per_cpu_s"), "paced_p50_ms": p.get("p50_ms"), "paced_p99_ms": p.get("p99_ms"),
            "periodic": ((per.get("missed"), per.get("doubled")) if per.get("supported")
                         else ("n/a" if per.get("supported") is False else None)),
            "kill": (k.get("lost"), k.get("doubled")) if "lost" in k else None}))
    if results.get("aps_paced_lateness_p99_ms") is not None:
        out.append(("APScheduler", {"paced_p50_ms": results.get("aps_paced_lateness_p50_ms"),
                                    "paced_p99_ms": results["aps_paced_lateness_p99_ms"],
                                    "kill": "all pending (memory only)"}))
    return out


def goals(results: dict) -> dict:
    """The issue's goals as ratios of this run's figures (None where a side is missing)."""
    cols = dict(columns(results))
    after = cols.pop("after")
    # The peers that do after's job (a persisted schedule, runs in processes): Huey and
    # Celery. APScheduler (threads of one process, nothing on disk) has its own ratio,
    # paced_p99_vs_aps, in the main table.
    cols.pop("APScheduler", None)
    peers = list(cols.values())
    best_rate = max((c["runs_per_cpu_s"] for c in peers if c.get("runs_per_cpu_s")), default=None)
    best_p99 = min((c["paced_p99_ms"] for c in peers if c.get("paced_p99_ms") is not None), default=None)
    out = {"runs_per_cpu_s_vs_best_peer": None, "paced_p99_vs_best_peer": None, "kill_lost_and_doubled": None}
    if best_rate and after.get("runs_per_cpu_s"):
        out["runs_per_cpu_s_vs_best_peer"] = after["runs_per_cpu_s"] / best_rate
    if best_p99 and after.get("paced_p99_ms") is not None:
        out["paced_p99_vs_best_peer"] = after["paced_p99_ms"] / best_p99
    if isinstance(after.get("kill"), tuple) and None not in after["kill"]:
        out["kill_lost_and_doubled"] = sum(after["kill"])
    return out


ROWS = [("runs_per_s", "runs/s, N due at once"), ("cpu_ms_per_run", "CPU ms per run (all processes)"),
        ("runs_per_cpu_s", "runs per CPU-second"), ("paced_p50_ms", "start lateness p50 ms (paced)"),
        ("paced_p99_ms", "start lateness p99 ms (paced)"), ("periodic", "every 1 s: missed / doubled"),
        ("kill", "kill -9, 1,000 due: lost / doubled")]


def table(results: dict) -> str:
    cols = columns(results)
    if len(cols) == 1 and not results.get("peers"):
        return ""
    width = max(12, *(len(t) for t, _ in cols))
    lines = ["", "after beside its peers (same jobs, same dates, same machine, same run)",
             f"{'':32} " + " ".join(f"{t:>{width}}" for t, _ in cols)]
    for key, label in ROWS:
        cells = []
        for _, c in cols:
            v = c.get(key)
            cells.append(" / ".join(_num(x, 0) for x in v) if isinstance(v, tuple) else _num(v))
        lines.append(f"{label:32} " + " ".join(f"{x:>{width}}" for x in cells))
    floor = results.get("floor_per_run_ms")
    if floor:
        lines.append(f"{'after floor: CPU ms / runs per CPU-s':32} {floor:.2f} ms / {1000 / floor:.0f}: a process "
                     "per run, the POST, claim and outcome stored (measured alone, same run)")
    for key, value in goals(results).items():
        limit, sense = GOALS[key]
        ok = "" if value is None else ("yes" if (value <= limit if sense == "<=" else value >= limit) else "NO")
        lines.append(f"goal {key:44} {_num(value):>8}  {sense} {limit:g}  {ok}")
    peers = results.get("peers") or {}
    if peers.get("versions"):
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in peers["versions"].items() if v))
    for peer, settings in (peers.get("settings") or {}).items():
        for name, text in settings.items():
            lines.append(f"{peer} {name}: {text}")
    for key, got in (peers.get("figures") or {}).items():
        for step, figures in got.items():
            if "error" in figures:
                lines.append(f"FAILED {key} {step}: {figures['error']}")
            elif step == "periodic" and figures.get("supported") is False:
                lines.append(f"{key} periodic: {figures['why']}")
            elif step == "kill":
                said = []
                if figures.get("unacked_in_redis"):
                    said.append(f"{figures['unacked_in_redis']} messages the killed worker had reserved stay "
                                "unacknowledged in Redis (handed out again after the visibility timeout, 1 h)")
                if figures.get("orphans_left_running"):
                    said.append(f"{figures['orphans_left_running']} of its processes ran on after the kill")
                if said:
                    lines.append(f"{key} kill: " + "; ".join(said))
    return "\n".join(lines)
