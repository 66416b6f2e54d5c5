"""The next runs of a task as its worker will start them, without running it (`after next`).

Pure: `now` is an argument. It replays the worker's own rules (outcome.py), run after run,
each run taken to end as it starts: the claim's first date (a cron repeat's first match,
jitter), the catch-up at arming (`catchup`, `catchup_window`), an extra run asked with
`status: run`, then next_after_run() for each following occurrence (`overlap`, jitter,
until/count). A paused task shows the runs that would follow a resume now.
"""

from __future__ import annotations

from datetime import datetime

from afterd.outcome import first_date, missed_fields, next_after_run
from afterd.task import FINAL, format_date, parse_date, parse_task


def next_runs(doc: dict, now: datetime, n: int) -> tuple[list[datetime], str | None]:
    """(up to `n` start times, a note saying why there are fewer or what they assume)."""
    task = parse_task(doc)                   # TaskError: the worker would refuse it too
    if task.status in FINAL:
        return [], f"it has ended ({task.status}): no run is left"
    d = dict(doc)
    note = None
    if task.status in ("pause", "paused"):
        note = "paused: these runs follow a resume now (missed ones as its catchup says)"
    if task.status in ("waiting", "reschedule") or "anchor" not in d:
        first = first_date(task) if task.repeat is not None else task.date
        if first is None:
            return [], "its until or count ends it before its first run"
        d.update(anchor=format_date(task.date), occurrence=0, date=format_date(first), attempts=0)
        d.pop("run_now", None)
    runs: list[datetime] = []
    t = now
    if task.status == "run" or isinstance(d.get("run_now"), str):
        at = parse_date(d["run_now"]) if isinstance(d.get("run_now"), str) else now
        runs.append(max(at, t))          # an extra run: the chain keeps its date
        d.pop("run_now", None)
        if task.repeat is None:
            return runs[:n], None
    elif task.repeat is None:
        return [max(task.date, t)][:n], None
    elif task.status == "running":
        started = parse_date(d["started_at"]) if isinstance(d.get("started_at"), str) else parse_date(d["date"])
        k, date = next_after_run(d, now, started=started)      # the run going on ends now
        if date is None:
            return [], "it is running its last occurrence"
        d.update(date=format_date(date), occurrence=k)
    while len(runs) < n:
        skip = missed_fields(d, t)           # at arming
        if skip is not None:
            if skip.get("status") == "done":
                break
            d.update(skip)
        start = max(parse_date(d["date"]), t)
        runs.append(start)
        k, date = next_after_run(d, start, started=start)
        if date is None:
            break
        d.update(date=format_date(date), occurrence=k)
        t = start
    if len(runs) < n and note is None:
        note = "its until or count ends it after these"
    return runs, note
