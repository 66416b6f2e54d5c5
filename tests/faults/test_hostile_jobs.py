"""Hostile jobs fail only themselves: the worker and the other tasks go on, on time."""

import os
import time
from datetime import datetime, timedelta, timezone

from helpers import wait_for
from test_engine import post_all, record_task, update, wait_final
from workers import read_runs

KILL_GRACE_S = 2


def utcnow():
    return datetime.now(timezone.utc)


def job_task(name, date, records, **fields):
    return {"worker": "manobi", "date": date.isoformat().replace("+00:00", "Z"), "status": "waiting",
            "job": {"name": name, "arguments": {"dir": str(records), **fields.pop("args", {})}}, **fields}


def processes_in_group(pgid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getpgid(int(name)) == pgid:
                    found.append(int(name))
            except ProcessLookupError:
                pass
    return found


def test_hostile_jobs_fail_only_themselves(couch, couch_url, db_name, spawn, records):
    w = spawn("manobi", couch_url, db_name, after_concurrency=8, after_kill_grace_s=KILL_GRACE_S).start()
    at = utcnow() + timedelta(seconds=3)
    hostile = post_all(couch, [
        job_task("forkbomb", at, records, timeout=4, args={"cap": 64}),
        job_task("descriptors", at, records),
        job_task("ignore_term", at, records),
        job_task("flood", at, records, args={"mb": 100}),
    ])
    bomb, descriptors, ignore_term, flood = hostile
    good = post_all(couch, [record_task(records, at + timedelta(seconds=0.5 * i)) for i in range(20)])

    wait_for(lambda: (records / "ignore_term.pid").exists(), 20, "the SIGTERM blocker to run")
    time.sleep(1)
    asked_s = time.monotonic()
    update(couch, ignore_term, status="cancel")
    wait_for(lambda: couch.get(ignore_term)["status"] == "canceled", 30, "the SIGTERM blocker canceled")
    cancel_took_s = time.monotonic() - asked_s
    blocker_pid = int((records / "ignore_term.pid").read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{blocker_pid}"), 10, "the blocker to be gone")

    final = wait_final(couch, good + hostile, 90)
    print(f"\nhostile: cancel of a SIGTERM blocker took {cancel_took_s:.1f}s (grace {KILL_GRACE_S}s); "
          + ", ".join(f"{n}: {final[i]['status']} {final[i].get('error', {}).get('type', '')}"
                      for n, i in zip(("forkbomb", "descriptors", "ignore_term", "flood"), hostile)))
    # The others ran, once each, on time.
    assert all(final[i]["status"] == "done" for i in good)
    starts = [r for r in read_runs(records) if r["event"] == "start"]
    assert len(starts) == 20
    late = [r["t"] - datetime.fromisoformat(r["date"].replace("Z", "+00:00")).timestamp() for r in starts]
    assert max(late) < 1.0, f"the other tasks were late: {max(late):.2f}s"
    # The bomb: ended by its timeout, and nothing of it is left.
    assert final[bomb]["status"] == "error", final[bomb]
    pgid = int((records / "forkbomb.pgid").read_text())
    wait_for(lambda: not processes_in_group(pgid), 10, "every fork bomb process to be gone")
    # SIGTERM ignored: SIGKILL after the grace.
    assert cancel_took_s < KILL_GRACE_S + 10
    # 100 MB of stdout: drained, not kept; the job itself succeeded.
    assert final[flood]["status"] == "done" and final[flood]["result"] == "flooded", final[flood]
    # Junk in every inherited descriptor: that run may fail, nothing else may.
    assert final[descriptors]["status"] in ("done", "error")
    assert w.alive()
    # A restart replays a journal the descriptor job scribbled in, and still runs a task.
    assert w.stop() == 0
    w.start()
    [after] = post_all(couch, [record_task(records, utcnow() + timedelta(seconds=2))])
    assert wait_final(couch, [after], 30)[after]["status"] == "done"
