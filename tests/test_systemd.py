"""The unit files under a real systemd (PID 1 of a systemd-nspawn container).

One container per module: booting takes about a second, the rootfs is built once per
machine (systemd_harness.build_rootfs). Needs root, systemd-nspawn and debootstrap
(`scripts/install-deps test`): skipped locally without them, a failure in CI.

The worker scenario runs the checkout's code inside the container (the checkout is
bind-mounted read-only at /src, /usr/bin/after runs `python3 -m afterd.cli` from it)
against the session's pouchdb-server on the host's loopback (the network is shared).
"""

import json
import re
import shlex
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from helpers import require_tool
from helpers import wait_for
import systemd_harness as harness

pytestmark = pytest.mark.systemd

CHECKOUT = Path(__file__).resolve().parent.parent
MAX_EXPOSURE = 2.5            # `systemd-analyze security`: 2.5 and below reads "OK"
JOBS_DIR = "/usr/local/etc/after"
START_TIMEOUT_S = 90          # generous: a loaded 2-core machine, python start-up, CouchDB
TASK_TIMEOUT_S = 60

WRAPPER = """#!/bin/sh
# The checkout's code, as the Debian package's /usr/bin/after would run the installed one.
PYTHONPATH=/src PYTHONDONTWRITEBYTECODE=1 exec python3 -m afterd.cli "$@"
"""
JOBS = {
    "hello": "def run(task):\n    return {'hello': list(task.arguments)}\n",
    "failing": "def run(task):\n    raise RuntimeError('failing on purpose')\n",
    "slow": ("import time\n\ndef run(task):\n    time.sleep(float(task.arguments[0]))\n"
             "    return 'slept'\n"),
    "changing": "def run(task):\n    return 'v1'\n",
    "chatty": "def run(task):\n    task.logger.info('chatty says %s', task.arguments[0])\n    return 'said'\n",
}


@pytest.fixture(scope="session")
def systemd_rootfs():
    missing = harness.missing_requirements()
    require_tool(missing is None, f"{missing} (for the systemd tests)")
    return harness.build_rootfs()


@pytest.fixture(scope="module")
def systemd_container(systemd_rootfs):
    """A booted container with the unit files installed, the `after` user, the jobs folder
    and /usr/bin/after running the checkout's code."""
    with harness.Container(systemd_rootfs, "units", binds_ro={CHECKOUT: "/src"}) as box:
        box.run(["install", "-m", "644", "/src/systemd/after@.service", "/src/systemd/after.target",
                 "/etc/systemd/system/"])
        box.write("/usr/bin/after", WRAPPER, mode="0755")
        box.run(["useradd", "--system", "--home-dir", "/nonexistent", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", "after"])
        for name, source in JOBS.items():
            box.write(f"{JOBS_DIR}/{name}.py", source)    # root-owned, 0644: trusted
        box.run(["systemctl", "daemon-reload"])
        yield box


# --- the unit files ----------------------------------------------------------------------

def test_unit_files_verify_clean(systemd_container):
    # --man=no: the man page comes with the Debian package, not with this rootfs.
    proc = systemd_container.run(["systemd-analyze", "verify", "--man=no",
                                  "/etc/systemd/system/after@x.service",
                                  "/etc/systemd/system/after.target"], check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_sandboxing_rates_ok_or_better(systemd_container):
    out = systemd_container.run(["systemd-analyze", "security", "--no-pager", "after@x.service"],
                                check=False).stdout
    match = re.search(r"Overall exposure level for after@x\.service: (\d+\.\d+)", out)
    assert match, out[-500:]
    exposure = float(match.group(1))
    print(f"systemd-analyze security after@x.service: {exposure}")
    assert exposure <= MAX_EXPOSURE


def test_enabling_an_instance_hooks_it_into_after_target(systemd_container):
    box = systemd_container
    box.run(["systemctl", "enable", "after@enabled.service"])
    try:
        wants = box.run(["systemctl", "show", "-p", "Wants", "--value", "after.target"]).stdout
        assert "after@enabled.service" in wants.split()
        part_of = box.run(["systemctl", "show", "-p", "PartOf", "--value", "after@enabled.service"]).stdout
        assert part_of.strip() == "after.target"
    finally:
        box.run(["systemctl", "disable", "after@enabled.service"])


# --- notify.py and logs.py inside the real unit (any worker could use them this way) ----

STAND_IN = """\
# Stands in for the worker: the unit's sandbox, sd_notify and journald priorities, for real.
import logging, os, signal, sys, time
sys.path.insert(0, "/src")
from afterd.logs import setup_logging
from afterd.notify import Notifier, status_line

setup_logging("info")
log = logging.getLogger("stand-in")
notifier = Notifier()
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))   # handlers only set flags
probe = os.path.join(os.environ["AFTER_STATE_DIR"], sys.argv[1], "probe")
with open(probe, "w") as f:
    f.write("ok")
try:
    open("/usr/local/etc/after/intruder.py", "w")
except OSError as e:
    log.info("jobs folder is read-only: %s", e.strerror)
notifier.status(status_line(2, 0, None, None))
notifier.ready()
log.info("started", extra={"task_id": "t-info"})
log.warning("job failed", extra={"task_id": "t-warn"})
log.info("watchdog every %ss", notifier.watchdog_interval_s())
while not stopping:
    notifier.watchdog()
    time.sleep(0.1)
notifier.stopping()
log.info("bye")
"""


def test_notify_and_journal_priorities_in_the_real_unit(systemd_container):
    box = systemd_container
    unit = "after@standin.service"
    box.write("/usr/local/lib/after-test/stand_in.py", STAND_IN)
    box.write(f"/etc/systemd/system/{unit}.d/stand-in.conf",
              "[Service]\nExecStart=\nExecStart=/usr/bin/python3 /usr/local/lib/after-test/stand_in.py %i\n")
    box.run(["systemctl", "daemon-reload"])
    try:
        box.run(["systemctl", "start", unit], timeout_s=START_TIMEOUT_S)
        # Type=notify: start returned, so READY=1 arrived; STATUS= shows in systemctl.
        assert show(box, unit, "ActiveState") == "active"
        assert show(box, unit, "StatusText") == "2 scheduled, 0 running"
        assert "Status: \"2 scheduled, 0 running\"" in box.run(
            ["systemctl", "status", "--no-pager", unit], check=False).stdout
        # StateDirectory= made /var/lib/after/standin for the `after` user, and nothing else
        # is writable (ProtectSystem=strict).
        assert box.run(["stat", "-c", "%U %a", "/var/lib/after/standin/probe"]).stdout.split()[0] == "after"
        wait_journal(box, unit, "jobs folder is read-only: Read-only file system")
        wait_journal(box, unit, "watchdog every 15.0s")          # WatchdogSec=30, halved
        warnings = wait_journal(box, unit, "[task t-warn] job failed", "-p", "warning")
        assert "started" not in warnings                          # "<6>" is info, not warning
        assert "[task t-info] started" in box.journal(unit, "-p", "info")
        box.run(["systemctl", "stop", unit], timeout_s=60)
        assert show(box, unit, "Result") == "success"
        wait_journal(box, unit, "bye")
    finally:
        print(box.journal(unit))
        box.run(["systemctl", "stop", unit], check=False)
        box.run(["rm", "-r", f"/etc/systemd/system/{unit}.d"])
        box.run(["systemctl", "daemon-reload"])


# --- the worker under systemd ------------------------------------------------------------

def configure(box, instance: str, couch_url: str, database: str, **extra_env):
    """A drop-in for one instance, as an operator would write with `systemctl edit`."""
    env = {"AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": database, **extra_env}
    lines = "".join(f"Environment={shlex.quote(f'{k}={v}')}\n" for k, v in env.items())
    box.write(f"/etc/systemd/system/after@{instance}.service.d/test.conf", "[Service]\n" + lines)
    box.run(["systemctl", "daemon-reload"])


def show(box, unit: str, prop: str) -> str:
    return box.run(["systemctl", "show", "-p", prop, "--value", unit]).stdout.strip()


def post_task(couch_url, database, worker, job, arguments=(), **fields) -> str:
    doc = {"worker": worker, "date": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
           "status": "waiting", "job": {"name": job, "arguments": list(arguments)}, **fields}
    reply = requests.post(f"{couch_url}/{database}", json=doc, timeout=10)
    reply.raise_for_status()
    return reply.json()["id"]


def wait_status(couch_url, database, task_id, statuses, timeout_s=TASK_TIMEOUT_S) -> dict:
    def current():
        doc = requests.get(f"{couch_url}/{database}/{task_id}", timeout=10).json()
        return doc if doc.get("status") in statuses else None
    return wait_for(current, timeout_s, f"task {task_id} to reach {statuses}", interval_s=0.2)


def wait_journal(box, unit, text, *args, timeout_s=30) -> str:
    return wait_for(lambda: text in (out := box.journal(unit, *args)) and out,
                    timeout_s, f"{text!r} in the journal of {unit} {' '.join(args)}", interval_s=0.3)


@pytest.fixture
def worker(systemd_container, couch_url, db_name):
    """Start after@<instance> against this test's database; stop it and show its journal after."""
    started = []

    def start(instance=None, **extra_env):
        instance = instance or "w" + uuid.uuid4().hex[:6]
        requests.put(f"{couch_url}/{db_name}", timeout=10)
        configure(systemd_container, instance, couch_url, db_name, **extra_env)
        unit = f"after@{instance}.service"
        started.append(unit)
        systemd_container.run(["systemctl", "start", unit], timeout_s=START_TIMEOUT_S)
        return instance, unit

    yield start
    for unit in started:
        print(f"--- journal of {unit}\n{systemd_container.journal(unit)}")
        systemd_container.run(["systemctl", "stop", unit], check=False, timeout_s=120)
        systemd_container.run(["systemctl", "reset-failed", unit], check=False)


def test_start_returns_when_ready_and_a_task_runs(systemd_container, worker, couch_url, db_name):
    box = systemd_container
    name, unit = worker("manobi")
    # Type=notify: `systemctl start` returned, so READY=1 came; STATUS= is the worker's line.
    assert show(box, unit, "ActiveState") == "active"
    status_text = show(box, unit, "StatusText")
    assert re.fullmatch(r"\d+ scheduled, \d+ running(, next \S+Z)?", status_text), status_text
    assert f'Status: "{status_text}"' in box.run(["systemctl", "status", "--no-pager", unit],
                                                 check=False).stdout
    assert show(box, unit, "User") == "after"

    task_id = post_task(couch_url, db_name, name, "hello", ["1234"])
    doc = wait_status(couch_url, db_name, task_id, {"done", "error"})
    assert doc["status"] == "done", doc.get("error")
    assert doc["result"] == {"hello": ["1234"]}
    wait_journal(box, unit, task_id)

    failing_id = post_task(couch_url, db_name, name, "failing")
    doc = wait_status(couch_url, db_name, failing_id, {"done", "error"})
    assert doc["status"] == "error" and "failing on purpose" in doc["error"]["message"]
    # the failure is logged at warning or worse: `journalctl -p warning` finds it
    wait_journal(box, unit, failing_id, "-p", "warning")
    assert task_id not in box.journal(unit, "-p", "warning")


def journal_entries(box, *args) -> list[dict]:
    out = box.run(["journalctl", "--no-pager", "-o", "json", *args], check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_journalctl_task_id_returns_that_tasks_lines_and_nothing_else(systemd_container, worker,
                                                                      couch_url, db_name):
    box = systemd_container
    name, unit = worker("manobi")
    ids = {"hello": post_task(couch_url, db_name, name, "hello", ["1"]),
           "failing": post_task(couch_url, db_name, name, "failing"),
           "chatty": post_task(couch_url, db_name, name, "chatty", ["hi"])}
    for job, task_id in ids.items():
        doc = wait_status(couch_url, db_name, task_id, {"done", "error"})
        assert doc["status"] == ("error" if job == "failing" else "done"), doc
    for job, task_id in ids.items():
        # The worker's line on the run's end carries the fields; wait for it, then read them all.
        wait_for(lambda: any(e.get("JOB") == job and "RUN_ID" in e
                             for e in journal_entries(box, "-u", unit, f"TASK_ID={task_id}")),
                 30, f"the journal entry of the end of {job}'s run", interval_s=0.3)
        entries = journal_entries(box, "-u", unit, f"TASK_ID={task_id}")
        others = [i for i in ids.values() if i != task_id]
        for e in entries:
            assert e["TASK_ID"] == task_id and e["JOB"] == job and e["WORKER"] == name, e
            assert task_id in e["MESSAGE"] and not any(o in e["MESSAGE"] for o in others), e
            assert e["_SYSTEMD_UNIT"] == unit
        [end] = [e for e in entries if "RUN_ID" in e and e["LOGGER"] == "after.worker"]
        assert end["RUN_ID"].startswith(task_id + "@")
        # `journalctl -o cat` reads as the stream lines always did.
        text = box.journal(unit, f"TASK_ID={task_id}")
        assert f"[task {task_id}] job {job} " in text, text
    # The job's own logger lines carry the fields too (found by TASK_ID alone: journald
    # ties a datagram to the unit only if the child still lives when it reads it).
    chatty = wait_for(lambda: [e for e in journal_entries(box, f"TASK_ID={ids['chatty']}")
                               if "chatty says hi" in e["MESSAGE"]], 30, "the job's own line")
    assert chatty[0]["JOB"] == "chatty" and chatty[0]["RUN_ID"].startswith(ids["chatty"] + "@")
    # One job's failures: JOB= and -p err (earlier tests' runs of after@manobi included).
    failures = journal_entries(box, "-u", unit, "JOB=failing", "-p", "err")
    assert ids["failing"] in {e["TASK_ID"] for e in failures}
    assert all(e["JOB"] == "failing" and "failing on purpose" in e["MESSAGE"] for e in failures), failures
    assert not journal_entries(box, "-u", unit, "JOB=hello", "-p", "err")
    # `after log NAME --task ID` is that same query.
    log = after_in(box, "log", name, "--task", ids["hello"])
    assert log.returncode == 0, log.stderr
    lines = [line for line in log.stdout.splitlines() if not line.startswith("-- ")]
    assert lines and all(ids["hello"] in line for line in lines), log.stdout
    # Lines about no task stay on the stream, under the unit as before.
    wait_journal(box, unit, f"worker {name} ready")


def test_reload_is_logged_and_picks_up_changed_and_new_jobs(systemd_container, worker, couch_url, db_name):
    box = systemd_container
    name, unit = worker()
    main_pid = show(box, unit, "MainPID")
    before = post_task(couch_url, db_name, name, "changing")
    assert wait_status(couch_url, db_name, before, {"done", "error"})["result"] == "v1"

    box.write(f"{JOBS_DIR}/changing.py", "def run(task):\n    return 'v2'\n")
    box.write(f"{JOBS_DIR}/added_later.py", "def run(task):\n    return 'new'\n")
    try:
        box.run(["systemctl", "reload", unit], timeout_s=START_TIMEOUT_S)
        # ExecReload= returned; RELOADING=1 ... READY=1 brings the unit back to active.
        wait_for(lambda: show(box, unit, "ActiveState") == "active", 30, "active after reload")
        assert show(box, unit, "MainPID") == main_pid      # reloaded, not restarted
        wait_journal(box, unit, "reload requested")        # SIGHUP reached the worker's loop
        changed = post_task(couch_url, db_name, name, "changing")
        assert wait_status(couch_url, db_name, changed, {"done", "error"})["result"] == "v2"
        added = post_task(couch_url, db_name, name, "added_later")
        assert wait_status(couch_url, db_name, added, {"done", "error"})["result"] == "new"
    finally:
        box.write(f"{JOBS_DIR}/changing.py", JOBS["changing"])
        box.run(["rm", "-f", f"{JOBS_DIR}/added_later.py"])


def test_two_instances_side_by_side(systemd_container, worker, couch_url, db_name):
    box = systemd_container
    (a, unit_a), (b, unit_b) = worker("a"), worker("b")
    assert show(box, unit_a, "MainPID") != show(box, unit_b, "MainPID")
    for_a = post_task(couch_url, db_name, a, "hello", ["a"])
    for_b = post_task(couch_url, db_name, b, "hello", ["b"])
    assert wait_status(couch_url, db_name, for_a, {"done"})["result"] == {"hello": ["a"]}
    assert wait_status(couch_url, db_name, for_b, {"done"})["result"] == {"hello": ["b"]}
    wait_journal(box, unit_a, for_a)
    assert for_a not in box.journal(unit_b)
    # after.target reaches every instance (PartOf=). `systemctl stop after.target` waits for
    # the target's own job only, and the workers stop after it (reverse of the target's
    # implicit After=): wait for them.
    box.run(["systemctl", "stop", "after.target"], timeout_s=120)
    wait_for(lambda: show(box, unit_a, "ActiveState") == show(box, unit_b, "ActiveState") == "inactive",
             120, "both instances stopped by after.target", 0.3)
    assert show(box, unit_a, "Result") == show(box, unit_b, "Result") == "success"


def test_stop_lets_a_running_job_finish(systemd_container, worker, couch_url, db_name):
    box = systemd_container
    name, unit = worker()
    job_s = 6.0       # long enough to see it running, short enough for a quick test
    task_id = post_task(couch_url, db_name, name, "slow", [job_s])
    wait_status(couch_url, db_name, task_id, {"running"})
    # STATUS= is kept current: the running job shows in `systemctl status`.
    wait_for(lambda: ", 1 running" in show(box, unit, "StatusText"), 30, "STATUS= to count the running job", 0.2)
    started = time.monotonic()
    box.run(["systemctl", "stop", unit], timeout_s=120)
    assert time.monotonic() - started < 60     # well within TimeoutStopSec: no SIGKILL needed
    assert show(box, unit, "Result") == "success"
    assert wait_status(couch_url, db_name, task_id, {"done", "error"}, 30)["status"] == "done"


def test_a_hung_loop_is_killed_by_the_watchdog_and_restarted(systemd_container, worker):
    box = systemd_container
    name, unit = worker(AFTER_TEST_HANG_AFTER_S="1")
    first_pid = show(box, unit, "MainPID")
    # A short watchdog to keep the test quick; a short stop timeout because a hung loop
    # never acts on SIGTERM (the teardown's `systemctl stop` would wait 90 s).
    box.write(f"/etc/systemd/system/{unit}.d/watchdog.conf",
              "[Service]\nWatchdogSec=3\nRestartSec=1\nTimeoutStopSec=5\n")
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "restart", unit], timeout_s=START_TIMEOUT_S)
    wait_for(lambda: int(show(box, unit, "NRestarts") or 0) >= 1, 60, "a watchdog restart", 0.5)
    journal = box.journal(unit)
    assert "Watchdog timeout" in journal
    assert "hanging the main loop on purpose" in journal
    # Restarted, not given up on: a new process reaches READY again (until it hangs again).
    wait_for(lambda: show(box, unit, "ActiveState") == "active"
             and show(box, unit, "MainPID") not in ("0", first_pid), 60, "the restarted worker ready", 0.3)


# --- the `after` command under systemd ---------------------------------------------------

def after_in(box, *args, timeout_s=START_TIMEOUT_S):
    """`after ARGS` inside the container, as root at a shell there would run it."""
    return box.run(["after", *args], check=False, timeout_s=timeout_s)


def test_the_after_command_drives_systemctl_and_journalctl(systemd_container, couch_url, db_name):
    box = systemd_container
    name = "cli" + uuid.uuid4().hex[:6]
    unit = f"after@{name}.service"
    requests.put(f"{couch_url}/{db_name}", timeout=10)
    configure(box, name, couch_url, db_name)
    try:
        # start -b is `systemctl start after@NAME`: it returns once the worker sent READY=1.
        started = after_in(box, "start", name, "-b")
        assert started.returncode == 0, started.stdout + started.stderr
        assert show(box, unit, "ActiveState") == "active"

        # list: one row per unit, with systemd's state and the worker's STATUS= line.
        listed = after_in(box, "list")
        assert listed.returncode == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        assert header.split() == ["WORKER", "STATE", "STATUS"]
        [row] = [r for r in rows if r.split()[0] == name]
        status_text = show(box, unit, "StatusText")
        assert re.match(r"\d+ scheduled, \d+ running", status_text)
        assert row.split(None, 2) == [name, "active", status_text]

        # log -n 5: the unit's journal, the last five entries; the task's line is among them.
        task_id = post_task(couch_url, db_name, name, "hello", ["cli"])
        assert wait_status(couch_url, db_name, task_id, {"done", "error"})["status"] == "done"
        wait_journal(box, unit, task_id)
        log = after_in(box, "log", name, "-n", "5")
        assert log.returncode == 0, log.stderr
        entries = [line for line in log.stdout.splitlines() if not line.startswith("-- ")]
        assert 1 <= len(entries) <= 5, log.stdout
        assert any(task_id in line and "job hello done" in line for line in entries), log.stdout

        # clean: journald owns retention; it explains what to run and deletes nothing.
        cleaned = after_in(box, "clean", name)
        assert cleaned.returncode == 0, cleaned.stderr
        assert "deletes nothing" in cleaned.stdout
        assert "journalctl --vacuum-time=" in cleaned.stdout
        assert "every unit" in cleaned.stdout
        assert task_id in box.journal(unit)

        # stop: `systemctl stop`, the worker exits cleanly and list no longer shows it active.
        stopped = after_in(box, "stop", name, timeout_s=120)
        assert stopped.returncode == 0, stopped.stderr
        assert show(box, unit, "ActiveState") == "inactive"
        assert show(box, unit, "Result") == "success"
        wait_journal(box, unit, f"worker {name} stopped")
        assert not any(r.split()[:2] == [name, "active"] for r in after_in(box, "list").stdout.splitlines())
    finally:
        print(f"--- journal of {unit}\n{box.journal(unit)}")
        box.run(["systemctl", "stop", unit], check=False, timeout_s=120)


def test_the_after_command_reports_a_worker_that_cannot_start(systemd_container, db_name):
    box = systemd_container
    name = "down" + uuid.uuid4().hex[:6]
    unit = f"after@{name}.service"
    configure(box, name, "http://127.0.0.1:9", db_name)     # nothing listens there
    box.write(f"/etc/systemd/system/{unit}.d/no-restart.conf", "[Service]\nRestart=no\n")
    box.run(["systemctl", "daemon-reload"])
    try:
        started = after_in(box, "start", name, "-b")
        assert started.returncode != 0
        assert unit in started.stderr           # systemctl's own line names the unit
        assert show(box, unit, "ActiveState") == "failed"
        assert "exit-code" == show(box, unit, "Result")
        wait_journal(box, unit, "127.0.0.1:9", "-p", "err")
    finally:
        box.run(["systemctl", "reset-failed", unit], check=False)


def readme_cron_drop_in() -> str:
    """The drop-in README's "Coming from cron" gives for a worker of former cron jobs."""
    text = (CHECKOUT / "README.md").read_text()
    block = text[text.index("**As whom.**"):]
    return block[block.index("```ini\n") + len("```ini\n"):block.index("```", block.index("```ini\n") + 6)]


def test_the_readme_s_cron_drop_in_runs_an_imported_line_as_its_user(systemd_container, worker, couch_url,
                                                                       db_name):
    """An /etc/crontab line imported for a worker under README's drop-in runs as the line's
    user (nobody), through its SHELL, with its variables, writing outside the sandbox."""
    from afterd import crontab
    from afterd.cli.cronimport import next_date

    box = systemd_container
    name = "cron" + uuid.uuid4().hex[:6]
    box.write(f"/etc/systemd/system/after@{name}.service.d/cron.conf", readme_cron_drop_in())
    box.run(["install", "-m", "644", "/src/jobs/shell.py", f"{JOBS_DIR}/shell.py"])
    out = f"/var/tmp/{name}.txt"
    line = ('SHELL=/bin/bash\nGREETING=hello\n'
            f'* * * * * nobody echo "$GREETING as $(id -un) with $SHELL" > {out}\n')
    table = crontab.parse_crontab(line, system=True)
    [step] = crontab.plan_import(table, {}, [], worker=name, source="/etc/crontab", tz="UTC",
                                 now=datetime.now(timezone.utc), next_date=next_date)
    _, unit = worker(name)
    assert show(box, unit, "User") == "root"
    reply = requests.put(f"{couch_url}/{db_name}/{step.task_id}", json=step.doc, timeout=10)
    assert reply.status_code == 201, reply.text
    doc = wait_status(couch_url, db_name, step.task_id, {"scheduled", "error"}, timeout_s=30)
    wait_for(lambda: requests.get(f"{couch_url}/{db_name}/{step.task_id}", timeout=10).json().get("runs"),
             120, "the imported line's first run (at the next minute)", interval_s=1)
    doc = requests.get(f"{couch_url}/{db_name}/{step.task_id}", timeout=10).json()
    assert doc["last_run"]["status"] == "done", doc["last_run"]
    assert box.run(["cat", out]).stdout == "hello as nobody with /bin/bash\n"
