"""Job discovery: trust checks as cron does them, and hot reload of job files."""

import logging
import os
import threading
import time

import pytest

from afterd.jobs import CodeCache, JobError, JobWatcher, diff, is_job_source, resolve, snapshot
from helpers import wait_for
from test_runner import RunnerHarness

TRUSTED = {0, os.geteuid()}


def write(path, text, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def jobs_dir(tmp_path):
    folder = tmp_path / "jobs"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    return folder


# --- resolve: the trust checks --------------------------------------------------


def test_a_job_is_a_module_or_a_package_in_the_folder(jobs_dir):
    module = write(jobs_dir / "bill.py", "def run(task): pass\n")
    package = write(jobs_dir / "report" / "__init__.py", "def run(task): pass\n")
    os.chmod(jobs_dir / "report", 0o755)
    assert resolve(jobs_dir, "bill", TRUSTED) == module.resolve()
    assert resolve(jobs_dir, "report", TRUSTED) == package.resolve()


def test_a_world_writable_job_file_is_refused(jobs_dir):
    path = write(jobs_dir / "bill.py", "def run(task): pass\n", mode=0o646)
    with pytest.raises(JobError) as caught:
        resolve(jobs_dir, "bill", TRUSTED)
    assert str(caught.value) == f"job file {path} is world-writable: refusing to run it"


def test_a_world_writable_jobs_folder_is_refused(jobs_dir):
    write(jobs_dir / "bill.py", "def run(task): pass\n")
    os.chmod(jobs_dir, 0o777)
    with pytest.raises(JobError, match="jobs folder .* is world-writable: refusing to run it"):
        resolve(jobs_dir, "bill", TRUSTED)


def test_a_job_file_owned_by_someone_else_is_refused(jobs_dir):
    path = write(jobs_dir / "bill.py", "def run(task): pass\n")
    stranger = 4242
    if os.geteuid() != 0:
        # Without root we cannot give a file away; trust nobody instead.
        with pytest.raises(JobError, match="owned by uid"):
            resolve(jobs_dir, "bill", {stranger})
        return
    os.chown(path, stranger, stranger)
    with pytest.raises(JobError) as caught:
        resolve(jobs_dir, "bill", TRUSTED)
    assert f"job file {path} is owned by uid {stranger}" in str(caught.value)
    assert resolve(jobs_dir, "bill", TRUSTED | {stranger}) == path.resolve()


def test_symlinks_may_stay_inside_the_folder_but_not_leave_it(jobs_dir, tmp_path):
    write(jobs_dir / "real.py", "def run(task): pass\n")
    os.symlink(jobs_dir / "real.py", jobs_dir / "alias.py")
    assert resolve(jobs_dir, "alias", TRUSTED) == (jobs_dir / "real.py").resolve()
    write(tmp_path / "outside.py", "def run(task): pass\n")
    os.symlink(tmp_path / "outside.py", jobs_dir / "escape.py")
    with pytest.raises(JobError, match="points outside the jobs folder"):
        resolve(jobs_dir, "escape", TRUSTED)


@pytest.mark.parametrize("name", ["os", "../x", "a.b", "", "x\n", "1abc", "a-b", None])
def test_names_that_are_not_plain_identifiers_or_absent_are_refused(jobs_dir, name):
    with pytest.raises(JobError) as caught:
        resolve(jobs_dir, name, TRUSTED)
    assert caught.value.type == "JobNotFound"
    assert repr(name) in str(caught.value)


# --- the compiled-code cache ----------------------------------------------------


def test_the_code_cache_never_serves_a_stale_or_broken_version(jobs_dir):
    cache = CodeCache()
    path = write(jobs_dir / "bill.py", "VALUE = 1\n")
    namespace = {}
    exec(cache.get(path), namespace)
    assert namespace["VALUE"] == 1
    write(path, "VALUE = (\n")
    with pytest.raises(SyntaxError) as caught:
        cache.get(path)   # not the previous good version
    assert caught.value.filename == str(path) and caught.value.lineno == 1
    write(path, "VALUE = 2\n")
    namespace = {}
    exec(cache.get(path), namespace)
    assert namespace["VALUE"] == 2


# --- the watcher ----------------------------------------------------------------


@pytest.mark.parametrize("name,is_job", [
    ("bill.py", True), ("pkg/helper.py", True), ("bill.py~", False), (".bill.py.swp", False),
    ("bill.py.swx", False), (".#bill.py", False), ("4913", False), ("notes.txt", False),
    ("__pycache__/bill.cpython-311.pyc", False), ("__pycache__/x.py", False),
])
def test_which_files_can_hold_a_job(jobs_dir, name, is_job):
    assert is_job_source(str(jobs_dir / name), str(jobs_dir)) == is_job


def test_snapshots_differ_only_by_content(jobs_dir):
    write(jobs_dir / "a.py", "x = 1\n")
    before = snapshot(jobs_dir)
    os.utime(jobs_dir / "a.py")
    write(jobs_dir / "a.py~", "backup\n")
    assert diff(before, snapshot(jobs_dir)) == []
    write(jobs_dir / "a.py", "x = 2\n")
    write(jobs_dir / "b.py", "y = 1\n")
    assert diff(before, snapshot(jobs_dir)) == ["a.py", "b.py"]


class Changes:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, changed):
        with self.lock:
            self.calls.append(changed)


@pytest.fixture
def watched(jobs_dir):
    write(jobs_dir / "bill.py", "def run(task): return 1\n")
    changes = Changes()
    watcher = JobWatcher(jobs_dir, changes)
    watcher.start()
    yield jobs_dir, changes
    watcher.stop()


def test_an_editor_save_in_pieces_is_one_change(watched):
    jobs_dir, changes = watched
    # vim: write test file, swap file, then the file itself in several writes
    write(jobs_dir / "4913", "")
    os.unlink(jobs_dir / "4913")
    write(jobs_dir / ".bill.py.swp", "swap")
    with open(jobs_dir / "bill.py", "w") as f:
        for part in ("def run(task):\n", "    return ", "2\n"):
            f.write(part)
            f.flush()
            time.sleep(0.05)
    wait_for(lambda: changes.calls, 5, "the change to be reported")
    time.sleep(0.5)   # nothing more comes: the debounce folded the writes together
    assert changes.calls == [["bill.py"]]


def test_events_without_a_content_change_are_ignored(watched):
    jobs_dir, changes = watched
    os.utime(jobs_dir / "bill.py")
    (jobs_dir / "bill.py").read_text()
    write(jobs_dir / "bill.py~", "backup")
    write(jobs_dir / "README.txt", "notes")
    (jobs_dir / "__pycache__").mkdir()
    write(jobs_dir / "__pycache__" / "bill.cpython-311.pyc", "junk")
    write(jobs_dir / "bill.py", "def run(task): return 1\n")   # same bytes again
    time.sleep(1.0)   # longer than the debounce: a change would have been reported
    assert changes.calls == []


# --- hot reload through the runner ------------------------------------------------


@pytest.fixture
def runner(tmp_path):
    harness = RunnerHarness(tmp_path / "jobs", concurrency=4)
    harness.write_job("bill", "def run(task):\n    return 'v1'\n")
    harness.write_job("other", "def run(task):\n    return 'other'\n")
    harness.runner.start()
    yield harness
    harness.runner.stop(0)


def test_an_edited_job_runs_its_new_code_a_second_later(runner, caplog):
    caplog.set_level(logging.INFO, logger="after.jobs")
    assert runner.run("bill").result == "v1"
    reloads = runner.runner.reloads
    runner.write_job("bill", "def run(task):\n    return 'v2'\n")
    time.sleep(1.0)
    assert runner.run("bill").result == "v2"
    wait_for(lambda: runner.runner.reloads > reloads, 5, "the reload to be counted")
    assert any("jobs reloaded" in r.getMessage() and "bill.py" in r.getMessage()
               for r in caplog.records)


def test_an_added_job_runs_and_a_removed_one_is_gone(runner):
    runner.write_job("fresh", "def run(task):\n    return 'new job'\n")
    time.sleep(1.0)
    assert runner.run("fresh").result == "new job"
    os.unlink(os.path.join(runner.jobs_dir, "fresh.py"))
    time.sleep(1.0)
    assert runner.run("fresh").error["type"] == "JobNotFound"


def test_a_syntax_error_fails_only_that_job_with_file_and_line(runner):
    assert runner.run("bill").result == "v1"
    path = runner.write_job("bill", "def run(task):\n    return 'v3'\n  oops(\n")
    time.sleep(1.0)
    outcome = runner.run("bill")
    assert not outcome.ok
    assert outcome.error["type"] == "SyntaxError"
    assert f"({path}, line 3)" in outcome.error["message"]
    assert runner.run("other").result == "other"


def test_reload_forces_a_fresh_read_and_is_counted(runner, caplog):
    caplog.set_level(logging.INFO, logger="after.jobs")
    before = runner.runner.reloads
    runner.runner.reload()
    assert runner.runner.reloads == before + 1
    assert any("jobs reloaded" in r.getMessage() for r in caplog.records)
    assert runner.run("bill").result == "v1"


def test_broken_jobs_lists_what_cannot_be_loaded_with_the_reason(tmp_path):
    """What each worker process puts in its heartbeat (metrics.jobs_broken) for `after explain`."""
    from afterd.jobs import MAX_BROKEN_REPORTED, broken_jobs

    folder = tmp_path / "jobs"
    folder.mkdir(mode=0o755)
    (folder / "good.py").write_text("def run(task):\n    return 1\n")
    (folder / "typo.py").write_text("# one\n# two\ndef run(task)\n    return 1\n")
    (folder / "norun.py").write_text("x = 1\n")
    (folder / "open.py").write_text("def run(task):\n    return 1\n")
    (folder / "open.py").chmod(0o666)
    (folder / "_helper.py").write_text("def (\n")     # not a job: a leading underscore
    assert broken_jobs(folder) == {
        "norun": "no run(task) function",
        "open": f"refused: job file {folder / 'open.py'} is world-writable: refusing to run it",
        "typo": "syntax error, line 3: expected ':'"}
    assert broken_jobs(tmp_path / "missing") == {}
    for i in range(MAX_BROKEN_REPORTED + 5):
        (folder / f"bad{i:02d}.py").write_text("def (\n")
    assert len(broken_jobs(folder)) == MAX_BROKEN_REPORTED      # the heartbeat stays small
