"""The `after` command, run as a user runs it: a subprocess, real CouchDB-API server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from afterd import __version__
from afterd.task import parse_date
from couchdb_server import PouchServer

AFTER = Path(sys.executable).parent / "after"
COMMANDS = ["start", "stop", "log", "list", "clean", "init", "add", "tasks", "show", "cancel",
            "reschedule", "jobs", "pause", "resume", "run", "history", "console", "next", "explain", "import"]


@pytest.fixture
def env(tmp_path):
    """An environment that ignores this machine's /etc/after/after.conf and /run/after."""
    conf = tmp_path / "after.conf"
    conf.write_text("")
    return {**os.environ, "AFTER_CONFIG": str(conf), "AFTER_RUN_DIR": str(tmp_path / "run"),
            "AFTER_COUCHDB_URL": "http://127.0.0.1:9", "AFTER_DATABASE": "tasks"}


def after(*args, env, timeout_s=60):
    command = [str(AFTER)] if AFTER.exists() else [sys.executable, "-m", "afterd"]
    return subprocess.run(command + list(args), env=env, capture_output=True, text=True, timeout=timeout_s)


def assert_one_line_error(result, code):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("after: ")


@pytest.fixture
def db_env(env, couch, couch_url):
    """`after` pointed at the per-test database (created empty by the `couch` fixture).
    couch_url, not couch.base_url: it keeps the credentials a real CouchDB needs."""
    return {**env, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": couch.database}


def add(db_env, *args):
    result = after("add", *args, env=db_env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# ---- help, version, usage ------------------------------------------------------------------

def test_version(env):
    result = after("-V", env=env)
    assert result.returncode == 0
    assert result.stdout.strip() == f"after {__version__}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_every_command(env, command):
    result = after(*([command] if command else []), "-h", env=env)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: after {command or ''}".rstrip())


def test_unknown_command_is_a_usage_error(env):
    result = after("frobnicate", env=env)
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_dash_m_works(env):
    result = subprocess.run([sys.executable, "-m", "afterd", "-V"], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == f"after {__version__}"


# ---- errors --------------------------------------------------------------------------------

def test_couchdb_unreachable_exits_69_in_one_line(env):
    result = after("tasks", env={**env, "AFTER_COUCHDB_URL": "http://admin:s3cret-pw@127.0.0.1:9"})
    assert_one_line_error(result, 69)
    assert "unreachable" in result.stderr
    assert "s3cret-pw" not in result.stderr


def test_wrong_password_is_one_line_without_the_password(tmp_path, env):
    server = PouchServer(tmp_path / "secured", admins={"admin": "right-pw"})
    server.start()
    try:
        url = server.url.replace("http://", "http://admin:wrong-pw@")
        result = after("tasks", env={**env, "AFTER_COUCHDB_URL": url})
        assert_one_line_error(result, 77)
        assert "refused the credentials" in result.stderr
        assert "wrong-pw" not in result.stderr and "right-pw" not in result.stderr
    finally:
        server.remove()


def test_bad_setting_exits_78(env):
    result = after("tasks", env={**env, "AFTER_CONCURRENCY": "lots"})
    assert_one_line_error(result, 78)
    assert "AFTER_CONCURRENCY" in result.stderr


def test_missing_config_file_named_by_after_config_exits_78(env, tmp_path):
    result = after("list", env={**env, "AFTER_CONFIG": str(tmp_path / "absent.conf")})
    assert_one_line_error(result, 78)


# ---- init ----------------------------------------------------------------------------------

def test_init_creates_database_design_and_security(env, couch_url, db_name):
    db_env = {**env, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": db_name}
    result = after("init", env=db_env)
    assert result.returncode == 0, result.stderr
    assert f"created database {db_name}" in result.stdout
    assert "installed the design document _design/after" in result.stdout
    assert requests.get(f"{couch_url}/{db_name}/_design/after", timeout=10).status_code == 200
    security = requests.get(f"{couch_url}/{db_name}/_security", timeout=10).json()
    assert security["members"]["roles"] == ["after", "after_reader"]

    again = after("init", env=db_env)
    assert again.returncode == 0
    assert "already exists" in again.stdout and "up to date" in again.stdout


# ---- add -----------------------------------------------------------------------------------

def test_add_the_seed_real_example(db_env, couch):
    task_id = add(db_env, "--worker", "manobi", "--job", "start_replication", "--at", "2012-02-27",
                  "--every", "1M7d")
    doc = couch.get(task_id)
    stored = {k: v for k, v in doc.items() if k not in ("_id", "_rev")}
    seed = {"worker": "manobi", "date": "2012-02-27", "status": "waiting",
            "job": {"name": "start_replication", "arguments": []}, "repeat": {"days": 7, "months": 1}}
    assert stored == seed        # a date alone is kept as written: the very document


def test_add_a_date_alone_in_a_time_zone_is_its_midnight_there(db_env, couch):
    task_id = add(db_env, "--worker", "w", "--job", "j", "--at", "2026-01-15", "--tz", "Europe/Paris")
    assert couch.get(task_id)["date"] == "2026-01-14T23:00:00Z"


def test_add_arguments_dates_and_options(db_env, couch):
    task_id = add(db_env, "--worker", "w", "--job", "generate_billing", "--arg", "1234", "--arg-json", "1234",
                  "--arg", "plain text", "--arg-json", '{"a": [1]}', "--arg", "00123", "--arg", "1e5",
                  "--arg-json", '"quoted"', "--at", "2026-07-01 03:00",
                  "--tz", "Europe/Lisbon", "--every", "1d", "--timeout", "5m", "--id", "billing-1234")
    assert task_id == "billing-1234"
    doc = couch.get(task_id)
    # --arg is text as typed; --arg-json is a JSON value; both in the order given.
    assert doc["job"]["arguments"] == ["1234", 1234, "plain text", {"a": [1]}, "00123", "1e5", "quoted"]
    assert doc["date"] == "2026-07-01T02:00:00Z"            # 03:00 in Lisbon summer time
    assert doc["repeat"] == {"days": 1, "tz": "Europe/Lisbon"}
    assert doc["timeout"] == 300


def test_add_writes_the_seed_document_with_string_arguments(db_env, couch):
    """The seed's own example: "arguments": ['1234', 'any_other_params']."""
    task_id = add(db_env, "--worker", "manobi", "--job", "generate_billing", "--at", "2026-12-01T03:00:00Z",
                  "--every", "1M", "--arg", "1234", "--arg", "any_other_params")
    stored = {k: v for k, v in couch.get(task_id).items() if k not in ("_id", "_rev")}
    assert stored == {"worker": "manobi", "date": "2026-12-01T03:00:00Z", "status": "waiting",
                      "job": {"name": "generate_billing", "arguments": ["1234", "any_other_params"]},
                      "repeat": {"months": 1}}


def test_add_policy_flags(db_env, couch):
    task_id = add(db_env, "--worker", "manobi", "--job", "generate_billing", "--every", "1d",
                  "--retry", "2", "--retry-delay", "30s", "--backoff", "2", "--max-delay", "3600",
                  "--retry-on", "error,timeout", "--catchup", "all", "--catchup-window", "1h",
                  "--overlap", "skip", "--jitter", "10s", "--history-limit", "5",
                  "--on-error-job", "notify_url", "--on-error-arguments", '{"url": "http://127.0.0.1:9/hook"}',
                  "--on-done-job", "hello")
    doc = couch.get(task_id)
    assert doc["retry"] == {"attempts": 3, "delay": "30s", "backoff": 2, "max_delay": 3600,
                            "on": ["error", "timeout"]}
    assert (doc["catchup"], doc["catchup_window"], doc["overlap"], doc["jitter"], doc["history_limit"]) == \
        ("all", "1h", "skip", "10s", 5)
    assert doc["on_error"] == {"job": {"name": "notify_url", "arguments": {"url": "http://127.0.0.1:9/hook"}}}
    assert doc["on_done"] == {"job": {"name": "hello"}}

    shown = after("show", task_id, "--policies", env=db_env)
    assert shown.returncode == 0, shown.stderr
    rows = dict(line.split(None, 1) for line in shown.stdout.splitlines()[1:])
    assert rows["retry"] == "3 attempts in all on error, timeout; wait 30s, x2 each time, at most 1h"
    assert rows["catchup"] == "all: each missed occurrence runs, in order, skip those older than 1h"
    assert rows["overlap"].startswith("skip: ") and rows["jitter"] == "up to 10s"
    assert rows["history_limit"] == "5" and rows["on_error"].startswith("job notify_url {")
    assert rows["on_done"] == "job hello []"


def test_show_policies_of_a_plain_task_are_the_defaults(db_env):
    task_id = add(db_env, "--worker", "w", "--job", "j")
    rows = dict(line.split(None, 1) for line in after("show", task_id, "--policies", env=db_env).stdout.splitlines()[1:])
    assert rows == {"retry": "no retry", "catchup": "one: missed occurrences run once",
                    "overlap": "wait: the next occurrence waits for the run, then catches up",
                    "jitter": "none", "history_limit": "the worker's (default 20)", "on_done": "-", "on_error": "-"}


def test_add_in_a_while(db_env, couch):
    from afterd import clock

    before = clock.now()
    doc = couch.get(add(db_env, "--worker", "w", "--job", "j", "--in", "1h30m"))
    delay_s = (parse_date(doc["date"]) - before).total_seconds()
    assert 5400 - 60 < delay_s < 5400 + 60


def test_add_with_an_existing_id_fails(db_env):
    add(db_env, "--worker", "w", "--job", "j", "--id", "same")
    result = after("add", "--worker", "w", "--job", "j", "--id", "same", env=db_env)
    assert_one_line_error(result, 1)
    assert "already exists" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--job", "bad-name"], "job.name"),
    (["--job", "j", "--every", "0d"], "move time forward"),
    (["--job", "j", "--every", "1x"], "is not a duration"),
    (["--job", "j", "--at", "2026-13-01"], "--at"),
    (["--job", "j", "--at", "2026-12-01", "--tz", "Mars/Olympus"], "not an IANA time zone"),
    (["--job", "j", "--arguments", "5"], "--arguments must be a JSON list or object"),
    (["--job", "j", "--arguments", "[1]", "--arg", "x"], "use it without --arg"),
    (["--job", "j", "--arg-json", "account-7"], "--arg-json 'account-7' is not JSON"),
    (["--job", "j", "--retry-delay", "30s"], "--retry-delay needs --retry"),
    (["--job", "j", "--retry", "2", "--retry-on", "crash"], "retry.on"),
    (["--job", "j", "--retry", "2", "--backoff", "0.5"], "retry.backoff"),
    (["--job", "j", "--jitter", "1M"], "use days"),
    (["--job", "j", "--catchup-window", "soon"], "is not a duration"),
    (["--job", "j", "--history-limit", "5000"], "history_limit"),
    (["--job", "j", "--on-error-arguments", "[]"], "needs --on-error-job"),
    (["--job", "j", "--on-done-job", "a.b"], "on_done.job.name"),
])
def test_add_bad_input_stores_nothing(db_env, couch, args, message):
    result = after("add", "--worker", "w", *args, env=db_env)
    assert_one_line_error(result, 2)
    assert message in result.stderr
    assert couch.find({"worker": "w"}) == []


# ---- tasks, show ---------------------------------------------------------------------------

def test_tasks_table_filters_and_json(db_env, couch):
    a = add(db_env, "--worker", "w1", "--job", "shell", "--at", "2026-01-01")
    b = add(db_env, "--worker", "w2", "--job", "http_request", "--at", "2026-02-01", "--every", "1M7d")
    doc = couch.get(b)
    couch.put({**doc, "status": "err"})   # an old document's spelling of "error"

    table = after("tasks", env=db_env)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "WORKER", "STATUS", "DATE", "JOB", "REPEAT"]
    assert lines[1].split() == [a, "w1", "waiting", "2026-01-01", "shell", "-"]
    assert lines[2].split() == [b, "w2", "err", "2026-02-01", "http_request", "1M7d"]

    only_w1 = after("tasks", "--worker", "w1", "--json", env=db_env)
    assert [d["_id"] for d in json.loads(only_w1.stdout)] == [a]
    errors = after("tasks", "--status", "error", "--json", env=db_env)
    assert [d["_id"] for d in json.loads(errors.stdout)] == [b]


def test_tasks_on_empty_database(db_env):
    result = after("tasks", env=db_env)
    assert result.returncode == 0
    assert result.stdout.strip() == "no tasks"


def test_show_prints_the_document(db_env, couch):
    task_id = add(db_env, "--worker", "w", "--job", "j", "--arg", "x")
    result = after("show", task_id, env=db_env)
    assert result.returncode == 0
    assert json.loads(result.stdout) == couch.get(task_id)


def test_show_unknown_id(db_env):
    result = after("show", "nope", env=db_env)
    assert_one_line_error(result, 1)
    assert "no task with id 'nope'" in result.stderr


# ---- cancel, reschedule ------------------------------------------------------------------------

def set_status(couch, task_id, status):
    couch.put({**couch.get(task_id), "status": status})


def test_cancel_a_scheduled_task(db_env, couch):
    task_id = add(db_env, "--worker", "w", "--job", "j")
    set_status(couch, task_id, "scheduled")
    result = after("cancel", task_id, env=db_env)
    assert result.returncode == 0
    assert couch.get(task_id)["status"] == "cancel"
    again = after("cancel", task_id, env=db_env)
    assert again.returncode == 0
    assert "already waiting for its worker to cancel it" in again.stdout


@pytest.mark.parametrize("status, code", [("done", 1), ("error", 1), ("err", 1), ("canceled", 0)])
def test_cancel_a_final_task_changes_nothing(db_env, couch, status, code):
    task_id = add(db_env, "--worker", "w", "--job", "j")
    set_status(couch, task_id, status)
    rev = couch.get(task_id)["_rev"]
    result = after("cancel", task_id, env=db_env)
    assert result.returncode == code
    assert "already" in (result.stdout if code == 0 else result.stderr)
    assert couch.get(task_id)["_rev"] == rev


def test_reschedule(db_env, couch):
    taken = add(db_env, "--worker", "w", "--job", "j", "--at", "2026-01-01")
    set_status(couch, taken, "scheduled")
    waiting = add(db_env, "--worker", "w", "--job", "j", "--at", "2026-01-01")

    assert after("reschedule", taken, "2027-03-04 05:06", env=db_env).returncode == 0
    assert after("reschedule", waiting, "2027-03-04T05:06:00+01:00", env=db_env).returncode == 0
    doc = couch.get(taken)
    assert (doc["date"], doc["status"]) == ("2027-03-04T05:06:00Z", "reschedule")
    doc = couch.get(waiting)
    assert (doc["date"], doc["status"]) == ("2027-03-04T04:06:00Z", "waiting")


def test_reschedule_refuses_final_tasks_and_bad_dates(db_env, couch):
    task_id = add(db_env, "--worker", "w", "--job", "j", "--at", "2026-01-01")
    set_status(couch, task_id, "done")
    result = after("reschedule", task_id, "2027-01-01", env=db_env)
    assert_one_line_error(result, 1)
    assert "final" in result.stderr
    bad = after("reschedule", task_id, "tomorrow", env=db_env)
    assert_one_line_error(bad, 2)
    assert couch.get(task_id)["date"] == "2026-01-01"    # unchanged


# ---- pause, resume, run, history --------------------------------------------------------------

@pytest.mark.parametrize("command,before,after_status,code,says", [
    ("pause", "scheduled", "pause", 0, "marked pause"),
    ("pause", "waiting", "pause", 0, "marked pause"),
    ("pause", "paused", "paused", 0, "already paused"),
    ("pause", "done", "done", 1, "final"),
    ("resume", "paused", "resume", 0, "marked resume"),
    ("resume", "pause", "resume", 0, "marked resume"),
    ("resume", "scheduled", "scheduled", 1, "not paused"),
    ("resume", "resume", "resume", 0, "already waiting"),
    ("run", "scheduled", "run", 0, "marked run"),
    ("run", "waiting", "run", 0, "marked run"),
    ("run", "run", "run", 0, "already waiting"),
    ("run", "paused", "paused", 1, "resume it first"),
    ("run", "error", "error", 1, "add a new task"),
    ("run", "cancel", "cancel", 1, "being canceled"),
])
def test_command_statuses(db_env, couch, command, before, after_status, code, says):
    task_id = add(db_env, "--worker", "w", "--job", "j", "--every", "1d")
    set_status(couch, task_id, before)
    rev = couch.get(task_id)["_rev"]
    result = after(command, task_id, env=db_env)
    assert result.returncode == code, result.stderr
    assert says in (result.stdout if code == 0 else result.stderr)
    doc = couch.get(task_id)
    assert doc["status"] == after_status
    assert (doc["_rev"] == rev) == (after_status == before)       # a refusal writes nothing
    if code:
        assert_one_line_error(result, code)


def test_command_status_of_an_unknown_task(db_env):
    assert_one_line_error(after("pause", "nope", env=db_env), 1)


def test_history_table_and_json(db_env, couch):
    task_id = add(db_env, "--worker", "w", "--job", "j", "--every", "1m")
    assert after("history", task_id, env=db_env).stdout.strip() == f"no runs recorded for task {task_id} yet"
    history = [{"occurrence": "2026-12-01T03:00:00Z", "attempt": 1, "start": "2026-12-01T03:00:00.002Z",
                "end": "2026-12-01T03:00:01.502Z", "duration_s": 1.5, "status": "done", "result": {"invoices": 3},
                "process": "after:process:w:h:0"},
               {"occurrence": "2026-12-01T03:01:00Z", "attempt": 2, "start": "2026-12-01T03:01:30Z",
                "end": "2026-12-01T03:01:31Z", "duration_s": 1, "status": "error",
                "error": "RuntimeError: card declined\nsecond line", "process": "after:process:w:h:0"},
               "a user's odd entry"]
    couch.put({**couch.get(task_id), "history": history})
    result = after("history", task_id, env=db_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["OCCURRENCE", "ATTEMPT", "START", "DURATION", "STATUS", "OUTCOME", "PROCESS"]
    assert lines[1].split() == ["2026-12-01T03:00:00Z", "1", "2026-12-01T03:00:00.002Z", "1.5s", "done",
                                '{"invoices":', "3}", "after:process:w:h:0"]
    assert "RuntimeError: card declined second line" in lines[2] and lines[2].split()[4] == "error"
    assert lines[3].startswith("?") and len(lines) == 4
    as_json = after("history", task_id, "--json", env=db_env)
    assert json.loads(as_json.stdout) == history


# ---- jobs ----------------------------------------------------------------------------------

def test_jobs_lists_good_and_broken_jobs(env, tmp_path):
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir(mode=0o755)
    jobs_dir.chmod(0o755)
    (jobs_dir / "good.py").write_text("def run(task):\n    return 1\n")
    (jobs_dir / "broken.py").write_text("def run(task)\n    return 1\n")
    (jobs_dir / "no_entry.py").write_text("X = 1\n")
    open_to_all = jobs_dir / "open_to_all.py"
    open_to_all.write_text("def run(task):\n    pass\n")
    open_to_all.chmod(0o666)
    for path in (jobs_dir / "good.py", jobs_dir / "broken.py", jobs_dir / "no_entry.py"):
        path.chmod(0o644)

    result = after("jobs", "--jobs-dir", str(jobs_dir), env=env)
    assert result.returncode == 1
    states = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    assert states["good"] == "ok"
    assert states["broken"].startswith("syntax error, line 1")
    assert states["no_entry"] == "no run(task) function"
    assert states["open_to_all"].startswith("refused:") and "world-writable" in states["open_to_all"]


def test_jobs_lists_the_shipped_examples_as_loadable(env):
    examples = Path(__file__).resolve().parent.parent / "jobs"
    result = after("jobs", "--jobs-dir", str(examples), env=env)
    states = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:])
    for name in ("generate_billing", "http_request", "notify_url", "shell", "start_replication"):
        assert states[name] == "ok", result.stdout


def test_jobs_missing_folder(env, tmp_path):
    result = after("jobs", "--jobs-dir", str(tmp_path / "none"), env=env)
    assert_one_line_error(result, 1)
    assert "does not exist" in result.stderr


# ---- workers without systemd: what needs no running worker ---------------------------------------

def test_list_with_no_workers(env):
    result = after("list", env=env)
    assert result.returncode == 0
    assert result.stdout.strip() == "no workers running"


def test_stop_a_worker_that_is_not_running(env):
    result = after("stop", "ghost", env=env)
    assert_one_line_error(result, 1)
    assert "worker ghost is not running" in result.stderr


def test_bad_worker_name(env):
    result = after("start", "../etc", env=env)
    assert_one_line_error(result, 2)


# ---- workers in the background without systemd, with the real worker --------------------------

@pytest.fixture
def worker_env(db_env, tmp_path):
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    jobs_dir.chmod(0o755)
    shipped = Path(__file__).resolve().parent.parent / "jobs" / "shell.py"
    (jobs_dir / "shell.py").write_bytes(shipped.read_bytes())
    (jobs_dir / "shell.py").chmod(0o644)
    return {**db_env, "AFTER_JOBS_DIR": str(jobs_dir), "AFTER_STATE_DIR": str(tmp_path / "state"),
            "AFTER_STOP_GRACE_S": "10", "AFTER_KILL_GRACE_S": "5", "AFTER_METRICS_DIR": "none"}


def test_background_worker_start_list_log_clean_stop(worker_env, couch, tmp_path):
    from helpers import wait_for

    if daemon_systemd_running():
        pytest.skip("systemd runs here: `start -b` would use systemctl")
    run_dir = Path(worker_env["AFTER_RUN_DIR"])
    try:
        started = after("start", "bg1", "-b", env=worker_env)
        assert started.returncode == 0, started.stderr
        assert "worker bg1 started in the background" in started.stdout
        pid = int((run_dir / "bg1.pid").read_text())

        again = after("start", "bg1", "-b", env=worker_env)
        assert_one_line_error(again, 1)
        assert "already running" in again.stderr

        listed = after("list", env=worker_env)
        assert listed.stdout.splitlines()[1].split()[:2] == ["bg1", str(pid)]

        # The worker really works: a task added now is run by it.
        task_id = add(worker_env, "--worker", "bg1", "--job", "shell", "--arg", "/bin/echo", "--arg", "hi")
        done = wait_for(lambda: couch.get(task_id)["status"] in ("done", "error") and couch.get(task_id),
                        timeout_s=60, message="the background worker to run the task")
        assert done["status"] == "done", done
        assert done["result"]["stdout_tail"] == "hi\n"

        log = wait_for(lambda: after("log", "bg1", "-n", "50", env=worker_env).stdout,
                       timeout_s=30, message="log lines")
        assert "bg1" in log
        # --task: only that task's lines (the worker's own lines, like "ready", are left out).
        about = wait_for(lambda: after("log", "bg1", "--task", task_id, env=worker_env).stdout,
                         timeout_s=30, message="the task's log lines")
        assert f"[task {task_id}] job shell done" in about
        assert all(task_id in line for line in about.splitlines()), about
        assert "ready" in log and "ready" not in about

        cleaned = after("clean", "bg1", env=worker_env)
        assert cleaned.returncode == 0 and "emptied" in cleaned.stdout
        assert (run_dir / "bg1.log").stat().st_size < len(log.encode())

        stopped = after("stop", "bg1", env=worker_env, timeout_s=120)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "worker bg1 stopped"
        assert not (run_dir / "bg1.pid").exists()
        assert after("list", env=worker_env).stdout.strip() == "no workers running"
    finally:
        kill_leftover(run_dir / "bg1.pid")


def test_background_worker_that_cannot_start_says_why(worker_env):
    if daemon_systemd_running():
        pytest.skip("systemd runs here: `start -b` would use systemctl")
    env = {**worker_env, "AFTER_COUCHDB_URL": "http://127.0.0.1:9"}
    run_dir = Path(env["AFTER_RUN_DIR"])
    try:
        result = after("start", "doomed", "-b", env=env)
        assert_one_line_error(result, 1)
        assert "worker doomed exited before it was ready, with code 69" in result.stderr
        assert not (run_dir / "doomed.pid").exists()
    finally:
        kill_leftover(run_dir / "doomed.pid")


def test_list_removes_stale_pid_files(env, tmp_path):
    run_dir = Path(env["AFTER_RUN_DIR"])
    run_dir.mkdir()
    dead = subprocess.Popen(["/bin/true"])
    dead.wait()
    (run_dir / "gone.pid").write_text(f"{dead.pid}\n")
    assert after("list", env=env).stdout.strip() == "no workers running"
    assert not (run_dir / "gone.pid").exists()


def daemon_systemd_running():
    from afterd.daemon import systemd_running

    return systemd_running()


def kill_leftover(pid_file: Path):
    """A failed test must not leave its worker running: end it by its recorded pid."""
    import signal

    try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


# ---- the man page ----------------------------------------------------------------------------

def test_man_page_documents_every_command_and_option():
    """packaging/after.1 stays in sync with the parser: each command and each of its options."""
    import argparse
    import re

    from afterd.cli.parser import build_parser

    page = (Path(__file__).resolve().parent.parent / "packaging" / "after.1").read_text()
    text = re.sub(r"\\f[BIRP]", "", page).replace("\\-", "-")
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(subparsers.choices) == sorted(COMMANDS)
    missing = []
    for name, sub in subparsers.choices.items():
        if not re.search(rf"^\.(B|BI|BR) \"?{name}\b", page, re.M):
            missing.append(f"command {name}")
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag not in ("--help",) and flag not in text:
                    missing.append(f"{name} {flag}")
    assert missing == []


def test_task_lines_of_a_text_log_follow_the_task_through_tracebacks_and_chunks():
    from afterd.daemon import TaskLines

    log = ("2026-12-01 03:00:00,001 INFO after.worker: worker w ready: 2 tasks armed\n"
           "2026-12-01 03:00:01,002 WARNING after.worker: [task t1] job bill failed: boom\n"
           "Traceback (most recent call last):\n"
           "RuntimeError: boom\n"
           "2026-12-01 03:00:01,003 INFO after.worker: [task t10] job bill done\n"
           "job bill task t1: INFO billed 3\n"
           "2026-12-01 03:00:02,004 WARNING after.worker: task t1: run t1@2026-12-01T03:00:00Z#0 interrupted\n"
           "2026-12-01 03:00:02,005 WARNING after.worker: outcome of run t1@2026-12-01T03:00:00Z#0 for a task\n"
           "2026-12-01 03:00:03,006 INFO after.worker: task t1x is unusable\n")
    expected = [line + "\n" for line in log.splitlines() if "t1 " in line or "t1]" in line or "t1:" in line
                or "t1@" in line or line.startswith(("Traceback", "RuntimeError"))]
    assert TaskLines("t1").feed(log) == expected
    # the same, fed in pieces cut anywhere (as `-f` reads them)
    lines, f = [], TaskLines("t1")
    for i in range(0, len(log), 7):
        lines += f.feed(log[i:i + 7])
    assert lines == expected
