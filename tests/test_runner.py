"""The runner: each run in its own forked process, at its date, isolated, capped, cancelable.

These drive a real Runner (and its zygote process) on job files written into a
temporary folder; no CouchDB is needed.
"""

import logging
import os
import signal
import statistics
import textwrap
import threading
import time
import uuid

import pytest

from afterd.runner import FORK_AHEAD_S, Runner, RunSpec
from helpers import wait_for


class RunnerHarness:
    """A started Runner on a jobs folder, collecting what it reports."""

    def __init__(self, jobs_dir, **kwargs):
        self.jobs_dir = str(jobs_dir)
        os.makedirs(self.jobs_dir, exist_ok=True)
        os.chmod(self.jobs_dir, 0o755)
        self.outcomes = {}
        self.starts = {}
        self._lock = threading.Lock()
        kwargs.setdefault("concurrency", 4)
        kwargs.setdefault("kill_grace_s", 1.0)
        self.runner = Runner(self.jobs_dir, on_outcome=self._on_outcome,
                             on_start=self._on_start, **kwargs)

    def _on_outcome(self, outcome):
        with self._lock:
            self.outcomes[outcome.run_id] = outcome

    def _on_start(self, run_id, started_at_s):
        with self._lock:
            self.starts[run_id] = started_at_s

    def write_job(self, name, source, mode=0o644):
        path = os.path.join(self.jobs_dir, f"{name}.py")
        tmp = os.path.join(self.jobs_dir, f".{name}.partial")
        with open(tmp, "w") as f:
            f.write(textwrap.dedent(source))
        os.chmod(tmp, mode)
        os.replace(tmp, path)   # whole, never half-written
        return path

    def submit(self, job, *, at=None, timeout_s=None, arguments=None, run_id=None, doc=None):
        run_id = run_id or uuid.uuid4().hex[:12]
        at = time.time() if at is None else at
        task = {"id": f"task-{run_id}", "worker": "tester", "date": "2026-12-01T03:00:00.437Z",
                "arguments": [] if arguments is None else arguments,
                "doc": doc if doc is not None else {"_id": f"task-{run_id}"}}
        self.runner.submit(RunSpec(run_id, f"task-{run_id}", job, at, timeout_s, task))
        return run_id

    def outcome(self, run_id, timeout_s=20.0):
        return wait_for(lambda: self.outcomes.get(run_id), timeout_s, f"outcome of {run_id}")

    def run(self, job, **kwargs):
        return self.outcome(self.submit(job, **kwargs))


@pytest.fixture
def make_runner(tmp_path):
    harnesses = []

    def make(**kwargs):
        harness = RunnerHarness(tmp_path / "jobs", **kwargs)
        harness.runner.start()
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.runner.stop(0)


@pytest.fixture
def runner(make_runner):
    return make_runner()


def test_return_value_is_the_result_and_task_carries_the_document(capfd, make_runner):
    runner = make_runner()   # started here, so the zygote inherits the captured stderr
    # Given a job that returns what it was given
    runner.write_job("echo", """
        def run(task):
            task.logger.info("billing %s", task.arguments[0])
            task.doc["touched"] = True
            return {"id": task.id, "worker": task.worker, "date": task.date.isoformat(),
                    "tz": str(task.date.tzinfo), "arguments": task.arguments, "doc": task.doc}
    """)
    doc = {"_id": "task-x", "job": {"name": "echo"}}
    # When it runs
    outcome = runner.run("echo", arguments=["1234"], doc=doc, run_id="x")
    # Then its return value is the result, and task held the task's fields
    assert outcome.ok, outcome.error
    assert outcome.result == {"id": "task-x", "worker": "tester",
                              "date": "2026-12-01T03:00:00.437000+00:00", "tz": "UTC",
                              "arguments": ["1234"], "doc": {**doc, "touched": True}}
    assert doc == {"_id": "task-x", "job": {"name": "echo"}}   # the job had a copy
    assert outcome.started_at_s <= outcome.finished_at_s
    # and its log line reached stderr tagged with the task id
    wait_for(lambda: "task task-x: INFO billing 1234" in capfd.readouterr().err or None, 5,
             "the job's log line on stderr")


CRASHES = [
    ("raise ValueError('bad invoice')", None, "ValueError", "bad invoice"),
    ("import os; os._exit(3)", None, "Exited", "exited with code 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", None, "Killed",
     "killed by signal SIGSEGV"),
    ("import ctypes; ctypes.string_at(0)", None, "Killed", "killed by signal SIGSEGV"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", None, "Killed",
     "killed by signal SIGKILL"),
    ("import time; time.sleep(60)", 1, "Timeout", "timed out after 1 s"),
]


@pytest.mark.parametrize("body,timeout_s,error_type,message", CRASHES,
                         ids=["raise", "exit3", "sigsegv", "null-pointer", "sigkill", "timeout"])
def test_a_failing_job_fails_only_its_own_run(make_runner, body, timeout_s, error_type, message):
    runner = make_runner(concurrency=2)
    runner.write_job("bad", f"def run(task):\n    {body}\n")
    runner.write_job("good", "import time\ndef run(task):\n    return time.time()\n")
    # Given a failing run and a good one due at the same moment
    at = time.time() + 0.3
    bad = runner.submit("bad", at=at, timeout_s=timeout_s)
    good = runner.submit("good", at=at)
    # Then the failing one is an error saying how it ended
    outcome = runner.outcome(bad)
    assert not outcome.ok
    assert outcome.error["type"] == error_type
    assert message in outcome.error["message"]
    if timeout_s:
        assert outcome.finished_at_s - outcome.started_at_s >= timeout_s
    # and the good one ran on time all the same
    good_outcome = runner.outcome(good)
    assert good_outcome.ok
    assert good_outcome.result - at < 0.5


def test_a_raising_job_reports_type_message_and_traceback(runner):
    runner.write_job("boom", """
        def run(task):
            raise KeyError("customer 42")
    """)
    error = runner.run("boom").error
    assert error["type"] == "KeyError"
    assert error["message"] == "'customer 42'"
    assert "boom.py\", line 3, in run" in error["traceback"]


def test_unbounded_allocation_under_a_memory_limit_is_an_error(make_runner):
    runner = make_runner(memory_limit_bytes=400 * 1024 * 1024)
    runner.write_job("hog", """
        def run(task):
            chunks = []
            while True:
                chunks.append(bytearray(32 * 1024 * 1024))
    """)
    runner.write_job("good", "def run(task):\n    return 'fine'\n")
    outcome = runner.run("hog", timeout_s=30)
    assert not outcome.ok
    assert outcome.error["type"] == "MemoryError"
    assert "ran out of memory (limit 419430400 bytes)" == outcome.error["message"]
    assert runner.run("good").result == "fine"


def test_done_and_error_event_style_first_outcome_wins(runner):
    runner.write_job("events", """
        def run(task):
            if task.arguments[0] == "done":
                task.done({"billed": 3})
                task.error("too late: done already")
                return "ignored"
            task.error("card declined")
            task.done("too late")
    """)
    done = runner.run("events", arguments=["done"])
    assert done.ok and done.result == {"billed": 3}
    failed = runner.run("events", arguments=["error"])
    assert not failed.ok
    assert failed.error == {"type": "JobError", "message": "card declined", "traceback": None}


def test_returning_nothing_is_done_with_null(runner):
    runner.write_job("quiet", "def run(task):\n    pass\n")
    outcome = runner.run("quiet")
    assert outcome.ok and outcome.result is None


@pytest.mark.parametrize("value", ["{1, 2}", "object()", "float('nan')"])
def test_a_result_json_cannot_hold_is_an_error(runner, value):
    runner.write_job("odd", f"def run(task):\n    return {{'value': {value}}}\n")
    outcome = runner.run("odd")
    assert not outcome.ok
    assert outcome.error["type"] == "ResultError"
    assert "not JSON-serialisable" in outcome.error["message"]


def test_a_job_name_that_is_not_a_file_in_the_jobs_folder_imports_nothing(runner, tmp_path):
    # Given modules that a careless loader would find: outside the folder, in a
    # package inside it, and on sys.path
    marker = tmp_path / "imported"
    trap = f"open({str(marker)!r}, 'a').write(__name__)\ndef run(task):\n    return 'ran'\n"
    (tmp_path / "x.py").write_text(trap)
    os.makedirs(os.path.join(runner.jobs_dir, "a"))
    with open(os.path.join(runner.jobs_dir, "a", "__init__.py"), "w") as f:
        f.write("")
    with open(os.path.join(runner.jobs_dir, "a", "b.py"), "w") as f:
        f.write(trap)
    for name in ("os", "../x", "a.b", "", "json"):
        outcome = runner.run(name)
        # Then each is an error naming the problem, and nothing was imported
        assert not outcome.ok, name
        assert outcome.error["type"] == "JobNotFound", name
        assert repr(name) in outcome.error["message"]
    assert not marker.exists()


def test_a_symlink_out_of_the_jobs_folder_is_refused(runner, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("def run(task):\n    return 'escaped'\n")
    os.symlink(outside, os.path.join(runner.jobs_dir, "escape.py"))
    outcome = runner.run("escape")
    assert outcome.error["type"] == "JobRefused"
    assert "points outside the jobs folder" in outcome.error["message"]


def test_a_world_writable_job_file_is_refused(runner):
    path = runner.write_job("open_door", "def run(task):\n    return 1\n", mode=0o666)
    outcome = runner.run("open_door")
    assert not outcome.ok
    assert outcome.error["message"] == f"job file {path} is world-writable: refusing to run it"


def test_200_runs_due_in_one_second_never_more_than_4_at_once_in_date_order(make_runner, tmp_path):
    runner = make_runner(concurrency=4)
    marks = tmp_path / "marks"
    marks.mkdir()
    runner.write_job("mark", f"""
        import os, time
        def run(task):
            name = os.path.join({str(marks)!r}, task.id)
            with open(name + ".start", "w") as f:
                f.write(repr(time.time()))
            time.sleep(0.03)   # 4 slots cannot keep up with one due every 4 ms: runs must wait
            with open(name + ".end", "w") as f:
                f.write(repr(time.time()))
    """)
    # Given 200 runs due within the same second, submitted out of date order
    base = time.time() + 0.5
    dates = {f"r{i:03d}": base + i * 0.004 for i in range(200)}
    for run_id in sorted(dates, key=lambda r: hash(r) % 97):
        runner.submit("mark", at=dates[run_id], run_id=run_id)
    outcomes = [runner.outcome(run_id, timeout_s=60) for run_id in dates]
    # Then all ran
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    # never more than 4 at once (from what the jobs themselves recorded)
    events = []
    for run_id in dates:
        events.append((float((marks / f"task-{run_id}.start").read_text()), 1))
        events.append((float((marks / f"task-{run_id}.end").read_text()), -1))
    level = peak = 0
    for _, step in sorted(events):
        level += step
        peak = max(peak, level)
    assert peak <= 4
    # in date order
    start_order = sorted(dates, key=lambda r: runner.outcomes[r].started_at_s)
    assert start_order == sorted(dates, key=dates.get)
    # and the wait for a slot is reported as queued_ms
    assert max(o.queued_ms for o in outcomes) > 0
    assert runner.runner.running() == 0 and runner.runner.queued() == 0


def test_a_run_waiting_for_a_slot_does_not_start_while_the_cap_is_reached(make_runner, tmp_path):
    runner = make_runner(concurrency=1)
    flag = tmp_path / "second-started"
    runner.write_job("slow", "import time\ndef run(task):\n    time.sleep(0.8)\n    return time.time()\n")
    runner.write_job("flag", f"import time\ndef run(task):\n    open({str(flag)!r}, 'w')\n"
                             "    return time.time()\n")
    at = time.time() + 0.3
    slow = runner.submit("slow", at=at)
    second = runner.submit("flag", at=at + 0.05)
    wait_for(lambda: slow in runner.starts, 10, "the slow run to start")
    time.sleep(0.3)   # the second run's date has passed: it must still be waiting
    assert not flag.exists()
    assert runner.runner.running() == 1 and runner.runner.queued() == 1
    finished = runner.outcome(slow).result
    started = runner.outcome(second).result
    assert started >= finished
    assert runner.outcomes[second].queued_ms > 0


def test_cancel_kills_a_running_job_and_its_subprocesses_within_the_grace(make_runner, tmp_path):
    runner = make_runner(kill_grace_s=0.5)
    pid_file = tmp_path / "child.pid"
    runner.write_job("stubborn", f"""
        import signal, subprocess, time
        def run(task):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)   # only SIGKILL will do
            child = subprocess.Popen(["sleep", "60"])
            open({str(pid_file)!r}, "w").write(str(child.pid))
            time.sleep(60)
    """)
    run_id = runner.submit("stubborn")
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 10, "the job's subprocess")
    canceled_at = time.time()
    runner.runner.cancel(run_id)
    outcome = runner.outcome(run_id)
    assert outcome.error["type"] == "Canceled" and outcome.error["message"] == "canceled"
    assert outcome.finished_at_s - canceled_at < 0.5 + 2.0   # grace, plus a loaded machine
    sub_pid = int(pid_file.read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{sub_pid}") or _is_zombie(sub_pid), 5,
             "the job's subprocess to die with it")


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_cancel_of_a_run_not_yet_started_takes_it_off_the_queue(runner, tmp_path):
    marker = tmp_path / "ran"
    runner.write_job("later", f"def run(task):\n    open({str(marker)!r}, 'w')\n")
    at = time.time() + 1
    run_id = runner.submit("later", at=at)
    runner.runner.cancel(run_id)
    outcome = runner.outcome(run_id)
    assert outcome.error["message"] == "canceled" and outcome.started_at_s is None
    time.sleep(max(0.0, at + 0.5 - time.time()))   # past its date: it must not have run
    assert not marker.exists()


def test_stop_lets_short_runs_finish_kills_long_ones_and_returns_the_rest(make_runner):
    runner = make_runner(concurrency=4)
    runner.write_job("nap", "import time\ndef run(task):\n    time.sleep(task.arguments[0])\n"
                             "    return 'woke'\n")
    short = runner.submit("nap", arguments=[0.2])
    long = runner.submit("nap", arguments=[60])
    future = runner.submit("nap", arguments=[0], at=time.time() + 60)
    wait_for(lambda: short in runner.starts and long in runner.starts, 10, "both to start")
    runner.runner.stop(1.0)
    # every run is reported by the time stop() returns
    assert runner.outcomes[short].result == "woke"
    assert runner.outcomes[long].error["type"] == "WorkerShutdown"
    assert runner.outcomes[long].error["message"] == ("killed at worker shutdown after grace "
                                                      "of 1 s")
    assert runner.outcomes[future].error["type"] == "NotStarted"
    late = runner.submit("nap", arguments=[0])
    assert runner.outcomes[late].error["type"] == "NotStarted"


def test_output_is_drained_so_a_chatty_job_never_blocks_logged_whole_and_its_tail_kept(caplog, make_runner):
    caplog.set_level(logging.INFO, logger="after.jobs")
    runner = make_runner(output_limit=1000)
    runner.write_job("chatty", """
        import sys
        def run(task):
            for i in range(20000):
                print("line", i, "x" * 80)
            print("the end", file=sys.stderr)
            task.logger.info("not output: the worker's own stderr")
            return "said it all"
    """)
    outcome = runner.run("chatty")
    assert outcome.result == "said it all"
    # The run's outcome carries the tail of stdout and stderr, in the order written
    assert outcome.output.endswith("line 19999 " + "x" * 80 + "\nthe end\n")
    assert len(outcome.output.encode()) <= 1000 and "line 19000 " not in outcome.output
    # and the worker's log has all of it, in lines about the task
    lines = [r for r in caplog.records if r.name == "after.jobs" and "output:" in r.getMessage()]
    logged = "".join(r.getMessage() for r in lines)
    assert all(f"line {i} x" in logged for i in (0, 100, 19999)) and "the end" in logged
    assert "not output" not in logged and "not output" not in outcome.output
    assert {getattr(r, "task_id", None) for r in lines} == {outcome.task_id}
    assert len(lines) > 1   # in chunks, not one line of 1.6 MB


def test_a_silent_job_has_no_output_and_output_limit_0_keeps_none(make_runner):
    runner = make_runner(output_limit=0)
    runner.write_job("quiet", "def run(task):\n    print('said')\n    return 1\n")
    assert runner.run("quiet").output is None
    runner = make_runner()
    runner.write_job("silent", "def run(task):\n    return 1\n")
    assert runner.run("silent").output is None


def test_dispatch_lateness_over_a_few_hundred_runs(make_runner):
    """Lateness of a job's first line against its date, with children forked ahead.

    Production target on 2 cores: p50 <= 1 ms, p99 <= 5 ms. Asserted here only
    generously, as the machine running the tests may be busy.
    """
    runner = make_runner(concurrency=8)   # measure dispatch, not waiting for a slot
    runner.write_job("noop", "import time\ndef run(task):\n    return time.time()\n")
    start = time.time() + 0.3
    dates = [start + i * (2.0 / 200) for i in range(200)]
    run_ids = []
    for at in dates:   # submitted as the worker does: FORK_AHEAD_S before the date
        time.sleep(max(0.0, at - FORK_AHEAD_S - time.time()))
        run_ids.append(runner.submit("noop", at=at))
    lateness_ms = sorted((runner.outcome(r).result - at) * 1000 for r, at in zip(run_ids, dates))
    p50 = statistics.median(lateness_ms)
    p99 = lateness_ms[int(len(lateness_ms) * 0.99) - 1]
    print(f"\ndispatch lateness over {len(lateness_ms)} runs: p50 {p50:.3f} ms, "
          f"p99 {p99:.3f} ms, max {lateness_ms[-1]:.3f} ms")
    assert lateness_ms[0] >= 0
    assert p99 < 1000  # a safety bound only (other work may share the 2 cores); make bench measures


def test_a_package_job_imports_its_own_modules_and_shadows_nothing(runner):
    package = os.path.join(runner.jobs_dir, "json")
    os.makedirs(package, mode=0o755)
    with open(os.path.join(package, "helper.py"), "w") as f:
        f.write("def total(items):\n    return sum(items)\n")
    with open(os.path.join(package, "__init__.py"), "w") as f:
        f.write("import json\nfrom . import helper\n"
                "def run(task):\n"
                "    return {'total': helper.total(task.arguments), 'stdlib': json.dumps([1])}\n")
    outcome = runner.run("json", arguments=[1, 2, 3])
    assert outcome.result == {"total": 6, "stdlib": "[1]"}


def test_a_dead_zygote_loses_only_the_runs_in_flight_and_is_replaced(runner, tmp_path):
    pid_file = tmp_path / "job.pid"
    runner.write_job("nap", f"""
        import os, time
        def run(task):
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(task.arguments[0])
            return "woke"
    """)
    long = runner.submit("nap", arguments=[60])
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 10, "the run to start")
    job_pid = int(pid_file.read_text())
    old_pid = runner.runner.zygote_pid
    os.kill(old_pid, signal.SIGKILL)
    assert runner.outcome(long).error["type"] == "Lost"
    # the run it lost does not go on unwatched
    wait_for(lambda: not os.path.exists(f"/proc/{job_pid}") or _is_zombie(job_pid), 10,
             "the orphaned job to die")
    wait_for(lambda: runner.runner.zygote_pid != old_pid and runner.runner._ready.is_set(), 10,
             "a new zygote")
    assert runner.run("nap", arguments=[0]).result == "woke"
