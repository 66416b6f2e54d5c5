"""An imported crontab run by real worker loops through both daylight saving days of
Lisbon (tests/stepped.py: the loop, decisions, claims and outcomes of production on an
in-memory store, the clock stepped), each run at the time Debian's cron would start it."""

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import stepped
from afterd import crontab
from afterd.cli.cronimport import next_date
from stepped import Cluster

CRONTAB = """SHELL=/bin/bash
30 1 * * *    /usr/local/bin/rotate-logs
0 3 * * 1-5   /usr/local/bin/backup
*/30 * * * *  /usr/local/bin/sync
"""


def run_through(tmp_path, monkeypatch, start, hours):
    # Steps of 20 s with a lease of two hours: two days of a worker's life in a few seconds.
    monkeypatch.setattr(stepped, "STEP_S", 20.0)
    cluster = Cluster(tmp_path, start=start, lease_s=7200, skew_margin_s=5)
    table = crontab.parse_crontab(CRONTAB)
    steps = crontab.plan_import(table, {}, [], worker="manobi", source="crontab", tz="Europe/Lisbon",
                                now=cluster.clock.now(), next_date=next_date)
    names = {}
    for step in steps:
        cluster.post(step.doc)
        names[step.task_id] = step.job.command.rsplit("/", 1)[-1]
    cluster.process(run_s=1.0)
    cluster.run_for(hours * 3600)
    runs = defaultdict(list)
    for run, started in sorted(cluster.started_at().items(), key=lambda kv: kv[1]):
        task_id, rest = run.split("@", 1)
        occurrence = rest.split("#", 1)[0]
        assert started - datetime.fromisoformat(occurrence.replace("Z", "+00:00")).timestamp() < 21, run
        runs[names[task_id]].append(occurrence)
    assert sorted(cluster.starts().values()) == [1] * len(cluster.starts())   # nothing ran twice
    return runs


def test_spring_forward(tmp_path, monkeypatch):
    # Friday 27 March 2026, noon: on Sunday 29 at 01:00 Lisbon's clocks jump to 02:00.
    runs = run_through(tmp_path, monkeypatch, datetime(2026, 3, 27, 12, tzinfo=timezone.utc), 66)
    # 01:30 does not exist on the 29th: cron runs it once, at the end of the jump (02:00 WEST).
    assert runs["rotate-logs"] == ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    # Weekdays at 03:00 wall time: Monday is in summer time.
    assert runs["backup"] == ["2026-03-30T02:00:00Z"]
    # A wild job runs at each wall time that exists: 00:30 WET, then 02:00 WEST (01:00 UTC),
    # so in UTC still every half hour, none lost, none doubled.
    assert runs["sync"][0] == "2026-03-27T12:30:00Z" and "2026-03-29T01:00:00Z" in runs["sync"]
    assert every_half_hour(runs["sync"])


def test_fall_back(tmp_path, monkeypatch):
    # Saturday 24 October 2026, noon: on Sunday 25 at 02:00 WEST the clocks go back to 01:00.
    runs = run_through(tmp_path, monkeypatch, datetime(2026, 10, 24, 12, tzinfo=timezone.utc), 48)
    # 01:30 happens twice on the 25th: a fixed-time job runs once, the first time (00:30 UTC).
    assert runs["rotate-logs"] == ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    assert runs["backup"] == ["2026-10-26T03:00:00Z"]
    # A wild job runs at each wall time, so at 01:00 and 01:30 twice (WEST, then WET): in UTC
    # still every half hour.
    assert {"2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z"} <= set(runs["sync"])
    assert every_half_hour(runs["sync"])


def every_half_hour(dates) -> bool:
    times = [datetime.fromisoformat(d.replace("Z", "+00:00")) for d in dates]
    return len(times) > 90 and all(b - a == timedelta(minutes=30) for a, b in zip(times, times[1:]))
