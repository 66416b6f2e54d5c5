"""Runs jobs: the worker's side of the zygote (zygote.py), plus hot reload of job files.

The worker is multi-threaded, so it never forks: it starts the single-threaded
zygote once with subprocess and sends it runs over a pipe. The zygote forks
each run's child ahead of its date; this module's reader thread turns the
zygote's events into on_start / on_outcome calls.

A job's stdout and stderr are one pipe, drained by the zygote (so a chatty job never
blocks on it): what it wrote is logged here in chunks, each line about the task
(journald fields TASK_ID, JOB, RUN_ID), and its last `output_limit` bytes come with
the run's outcome (RunOutcome.output). task.logger goes straight to the worker's
stderr (journald under systemd), as before.

on_start is called when a run is given its slot, at most zygote.GRANT_AHEAD_S
(5 ms) before its date, with started_at_s = the moment the job starts. The
job module's own top-level code runs at the date, inside the concurrency cap,
since it is the job's code too.
"""

import io
import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import date, datetime

from afterd import clock, jobs
from afterd.jobs import JobWatcher, default_trusted_uids
from afterd.logs import about

log = logging.getLogger("after.runner")
jobs_log = logging.getLogger("after.jobs")

# How long before its date the worker should submit a run: time enough to fork
# and compile on a loaded machine, short enough that few children sit waiting.
FORK_AHEAD_S = 0.1
ZYGOTE_START_TIMEOUT_S = 30.0


@dataclass
class RunSpec:
    run_id: str
    task_id: str
    job: str
    at_epoch_s: float
    timeout_s: float | None
    task: dict   # {"id","worker","date","arguments","doc"} handed to the job as `task`
    queued_since_s: float | None = None   # epoch s: held back by the worker for want of room since then


@dataclass
class RunOutcome:
    run_id: str
    task_id: str
    ok: bool
    result: object
    error: dict | None          # {"type","message","traceback"}
    started_at_s: float | None
    finished_at_s: float
    queued_ms: float
    output: str | None = None   # the last output_limit bytes of stdout and stderr; None: nothing


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


class Runner:
    def __init__(self, jobs_dir, *, on_outcome, on_start, concurrency: int, kill_grace_s: float,
                 trusted_uids: set[int] | None = None, memory_limit_bytes: int | None = None,
                 watch: bool = True, journal_path=None, output_limit: int = 4096):
        self.jobs_dir = os.path.abspath(jobs_dir)
        self.on_outcome = on_outcome
        self.on_start = on_start
        self.concurrency = concurrency
        self.kill_grace_s = kill_grace_s
        self.trusted_uids = default_trusted_uids() if trusted_uids is None else set(trusted_uids)
        self.memory_limit_bytes = memory_limit_bytes
        self.journal_path = str(journal_path) if journal_path else None
        self.output_limit = output_limit
        self.reloads = 0
        # {job: why it cannot run} of the folder, as of start or the last reload; replaced,
        # never changed in place: the heartbeat thread reads it (jobs_broken).
        self.broken_jobs: dict[str, str] = {}
        self._watch = watch
        self._watcher: JobWatcher | None = None
        self._lock = threading.Lock()         # the run table
        self._send_lock = threading.Lock()    # the command pipe: never held with _lock
        self._started: dict[str, bool] = {}    # run_id -> has it started; until its outcome
        self._specs: dict[str, RunSpec] = {}
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._spawned_mono_s = 0.0
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------

    def start(self):
        self._check_jobs()
        self._spawn_zygote()
        if not self._ready.wait(ZYGOTE_START_TIMEOUT_S):
            raise RuntimeError("the runner's zygote process did not start")
        if self._watch:
            self._watcher = JobWatcher(self.jobs_dir, self._jobs_changed)
            self._watcher.start()

    @property
    def zygote_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _spawn_zygote(self):
        config = {"jobs_dir": self.jobs_dir, "concurrency": self.concurrency,
                  "kill_grace_s": self.kill_grace_s, "trusted_uids": sorted(self.trusted_uids),
                  "memory_limit_bytes": self.memory_limit_bytes, "fork_ahead_s": FORK_AHEAD_S,
                  "journal_path": self.journal_path, "output_limit": self.output_limit}
        self._ready.clear()
        proc = subprocess.Popen(
            [sys.executable, "-m", "afterd.zygote", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, bufsize=0)
        self._proc = proc
        self._spawned_mono_s = clock.monotonic_s()
        self._reader = threading.Thread(target=self._read_events, args=(proc,),
                                        name="runner-reader", daemon=True)
        self._reader.start()

    def stop(self, grace_s: float):
        """Stop accepting runs; let running ones finish within grace_s, then kill them.

        Runs not started are reported as NotStarted so the worker can re-arm them.
        Returns once every run has been reported.
        """
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        if self._watcher:
            self._watcher.stop()
        self._send({"op": "stop", "grace_s": grace_s})
        if self._proc is not None:
            try:
                self._proc.wait(timeout=grace_s + self.kill_grace_s + 10)
            except subprocess.TimeoutExpired:
                log.error("the runner's zygote did not stop: killing it")
                self._proc.kill()
                self._proc.wait()
            with self._send_lock:
                self._proc.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=10)
        self._report_lost("the runner stopped before the run ended")

    # --- runs -----------------------------------------------------------------------

    def submit(self, spec: RunSpec):
        with self._lock:
            if spec.run_id in self._started:
                log.warning("run %s submitted twice: ignoring the second", spec.run_id)
                return
            stopping = self._stopping
            if not stopping:
                self._started[spec.run_id] = False
                self._specs[spec.run_id] = spec
        sent = not stopping and self._send({
            "op": "submit", "run_id": spec.run_id, "task_id": spec.task_id, "job": spec.job,
            "at_epoch_s": spec.at_epoch_s, "timeout_s": spec.timeout_s, "task": spec.task,
            **({"queued_since_epoch_s": spec.queued_since_s} if spec.queued_since_s is not None else {})})
        if not sent:
            self._deliver(RunOutcome(spec.run_id, spec.task_id, False, None, {
                "type": "NotStarted", "message": "not started: the runner is not running",
                "traceback": None}, None, clock.epoch_s(), 0.0))

    def cancel(self, run_id: str):
        """Stop a run: SIGTERM to its process group, SIGKILL after kill_grace_s.

        A run not yet started is taken off the queue. Either way its outcome is
        an error "canceled" (unless it finished first).
        """
        self._send({"op": "cancel", "run_id": run_id})

    def reload(self) -> None:
        """Forget compiled job code (SIGHUP): every run from now on reads its file again."""
        self._reload("reload requested")

    def running(self) -> int:
        with self._lock:
            return sum(self._started.values())

    def queued(self) -> int:
        with self._lock:
            return sum(not started for started in self._started.values())

    # --- internals ------------------------------------------------------------------

    def _jobs_changed(self, changed_paths: list[str]):
        self._reload("changed: " + ", ".join(changed_paths))

    def _reload(self, why: str):
        with self._lock:
            self.reloads += 1
            count = self.reloads
        self._send({"op": "reload"})
        jobs_log.info("jobs reloaded (%d) from %s: %s", count, self.jobs_dir, why)
        self._check_jobs()

    def _check_jobs(self):
        """Which job files cannot be loaded, said once per change and in the heartbeat."""
        try:
            broken = jobs.broken_jobs(self.jobs_dir, self.trusted_uids)
        except OSError as e:
            jobs_log.warning("could not check the jobs in %s: %s", self.jobs_dir, e)
            return
        for name, why in sorted(broken.items()):
            if self.broken_jobs.get(name) != why:
                jobs_log.error("job %s cannot be loaded: %s", name, why)
        self.broken_jobs = broken

    def _send(self, command: dict) -> bool:
        line = json.dumps(command, default=_json_default).encode() + b"\n"
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        with self._send_lock:
            try:
                proc.stdin.write(line)
                return True
            except (OSError, ValueError):
                log.error("the runner's zygote is gone: cannot send %s", command.get("op"))
                return False

    def _read_events(self, proc: subprocess.Popen):
        # The pipe is unbuffered (bufsize=0, for stdin's sake): iterating it raw would
        # read(2) one byte at a time. A buffered reader returns what the pipe holds.
        for line in io.BufferedReader(proc.stdout):
            try:
                event = json.loads(line)
            except ValueError:
                log.error("garbled event from the runner's zygote: %r", line[:200])
                continue
            kind = event.pop("ev", None)
            if kind == "ready":
                self._ready.set()
            elif kind == "start":
                with self._lock:
                    if event["run_id"] in self._started:
                        self._started[event["run_id"]] = True
                self._call(self.on_start, event["run_id"], event["started_at_s"])
            elif kind == "output":
                text = event.get("text", "").rstrip("\n")
                if text:
                    jobs_log.info("job %s task %s output:\n%s", event.get("job"), event.get("task_id"), text,
                                  extra=about(event.get("task_id"), event.get("job"), event.get("run_id"),
                                              in_text=True))
            elif kind == "outcome":
                self._deliver(RunOutcome(**event))
        if self._stopping:
            return
        log.error("the runner's zygote exited unexpectedly (%s): starting a new one",
                  proc.wait())
        with self._send_lock:
            proc.stdin.close()
        self._report_lost("the runner's process died during the run")
        # A zygote that cannot even start should not be respawned in a tight loop.
        if clock.monotonic_s() - self._spawned_mono_s < 1.0:
            threading.Event().wait(1.0)
        with self._lock:
            if self._stopping:
                return
        self._spawn_zygote()

    def _deliver(self, outcome: RunOutcome):
        with self._lock:
            self._started.pop(outcome.run_id, None)
            self._specs.pop(outcome.run_id, None)
        self._call(self.on_outcome, outcome)

    def _report_lost(self, message: str):
        """Every run still unreported: not started (re-arm it) or lost mid-run."""
        with self._lock:
            lost = [(self._specs[r], started) for r, started in self._started.items()]
        now = clock.epoch_s()
        for spec, started in lost:
            error = ({"type": "Lost", "message": message, "traceback": None} if started else
                     {"type": "NotStarted", "message": "not started: the runner stopped",
                      "traceback": None})
            self._deliver(RunOutcome(spec.run_id, spec.task_id, False, None, error,
                                     None, now, 0.0))

    @staticmethod
    def _call(callback, *args):
        try:
            callback(*args)
        except Exception:
            log.exception("runner callback %s failed", getattr(callback, "__name__", callback))
