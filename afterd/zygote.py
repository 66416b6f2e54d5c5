"""The zygote: a single-threaded process that forks one child per run.

The worker is multi-threaded, and forking a multi-threaded process is unsafe
(a lock held by another thread stays held forever in the child). So the worker
starts this small process once (runner.py) and talks to it over two pipes in
JSON lines; only this process forks.

Children are forked ahead of their date: a child is made up to fork_ahead_s
early with the job's code already compiled, then blocks reading its "go" pipe.
At the date (and only while fewer than `concurrency` jobs run) the zygote
writes one byte to it, and the job starts within a fraction of a millisecond.

Commands in (one JSON object a line):
  {"op": "submit", "run_id", "task_id", "job", "at_epoch_s", "timeout_s", "task",
   "queued_since_epoch_s"?}
  {"op": "cancel", "run_id"}   {"op": "reload"}   {"op": "stop", "grace_s"}
Events out (started_at_s and finished_at_s are epoch seconds):
  {"ev": "ready"}   {"ev": "start", "run_id", "started_at_s"}
  {"ev": "output", "run_id", "task_id", "job", "text"}   what the job wrote, in chunks
  {"ev": "outcome", "run_id", "task_id", "ok", "result", "error",
   "started_at_s", "finished_at_s", "queued_ms", "output"}

A child's stdout and stderr are one pipe (as `2>&1`), drained here so a chatty job never
blocks on it: everything it wrote goes out in "output" events of up to OUTPUT_CHUNK_BYTES
(the worker logs each), and its last `output_limit` bytes go with the outcome (the
worker keeps them with the run's history entry). An "output" event always comes before
its run's "outcome".
"""

import bisect
import errno
import json
import os
import selectors
import signal
import sys
# signal.pthread_sigmask turns every number into an enum member on each call: a
# fifth of the zygote's time per fork. The C function underneath takes plain ints.
import _signal
import time

from afterd.child import run_child
# Exit codes of a child whose own machinery (not the job) ended it.
from afterd.exits import EXIT_OK, EXIT_SOFTWARE
from afterd.jobfiles import CodeCache, JobError, resolve


# A child is given its slot this long before its date and waits for the date
# itself (sleeping, then spinning the last child.SPIN_S), so the zygote's own delays
# (a fork of another child, a busy loop turn) do not make the job late.
GRANT_AHEAD_S = 0.005
# No new fork when a grant is this close: a fork of a Python process takes a
# few milliseconds and would delay it.
FORK_GUARD_S = 0.004
IDLE_WAKE_S = 0.5
OUTPUT_LIMIT_BYTES = 4096      # the default of the worker's output_limit setting
OUTPUT_CHUNK_BYTES = 64 * 1024  # what the job wrote goes to the log in pieces this big at most
ALL_SIGNALS = frozenset(int(sig) for sig in signal.valid_signals())
RESULT_MAX_BYTES = 8 * 1024 * 1024   # CouchDB's default max_document_size


def _seconds(value: float) -> str:
    return f"{value:g}"


def describe_exit(status: int) -> tuple[str, str]:
    """(error type, message) for a child that ended without reporting an outcome."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return "Killed", f"killed by signal {name}"
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "Exited", "exited with code 0 before reporting an outcome"
    return "Exited", f"exited with code {code}"


class Run:
    """One run. Times carry their clock in their names: _epoch_s is time.time() (dates,
    what the worker and the journal see), _mono_s is time.monotonic() (timeouts, kill
    deadlines: they must not jump with the wall clock)."""

    def __init__(self, cmd: dict, seq: int, submitted_at_epoch_s: float):
        self.run_id = cmd["run_id"]
        self.task_id = cmd.get("task_id")
        self.job = cmd.get("job")
        self.at_epoch_s = float(cmd["at_epoch_s"])
        self.timeout_s = cmd.get("timeout_s")
        self.task = cmd.get("task") or {}
        self.seq = seq
        self.submitted_at_epoch_s = submitted_at_epoch_s
        # Set when the worker held the run back for want of room (its date passed while
        # the worker already had as many runs out as it allows): it has been queued since.
        self.queued_since_epoch_s = cmd.get("queued_since_epoch_s")
        self.state = "pending"   # pending -> forked -> running; or dropped
        self.pid = None
        self.go_w = self.result_r = self.out_r = None
        self.result_buf = bytearray()
        self.result_overflow = False
        self.out_tail = bytearray()   # the last output_limit bytes of its output
        self.out_chunk = bytearray()  # written and not yet sent to the worker's log
        self.started_at_epoch_s = self.started_at_mono_s = None
        self.queued_ms = 0.0
        self.kill_type = self.kill_reason = None
        self.sigkill_at_mono_s = None

    def ready_at_epoch_s(self) -> float:
        """From when this run could have started but for the concurrency cap."""
        ready = max(self.at_epoch_s, self.submitted_at_epoch_s)
        return min(ready, self.queued_since_epoch_s) if self.queued_since_epoch_s is not None else ready

    @property
    def key(self):
        return (self.at_epoch_s, self.seq, self.run_id)


class Zygote:
    def __init__(self, config: dict, cmd_fd: int, out_fd: int, wakeup_fd: int):
        self.jobs_dir = config["jobs_dir"]
        self.concurrency = max(1, int(config["concurrency"]))
        self.kill_grace_s = float(config["kill_grace_s"])
        self.trusted_uids = set(config["trusted_uids"])
        self.memory_limit_bytes = config.get("memory_limit_bytes")
        self.fork_ahead_s = float(config["fork_ahead_s"])
        self.output_limit = max(0, int(config.get("output_limit", OUTPUT_LIMIT_BYTES)))
        # The worker's journal: each child records its own start there at its date,
        # just before the job's first line, so a worker killed the next instant still
        # knows the run began (and must not run it again), and a child killed before
        # its date leaves no start (and may run again). O_APPEND: the worker appends
        # to the same file; no fsync: a killed process loses nothing already written.
        journal_path = config.get("journal_path")
        self.journal_fd = (os.open(journal_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                           if journal_path else None)
        # Enough ready children to refill every slot twice, without forking a
        # thousand processes for a thousand runs due in the same second.
        self.prefork_max = max(8, 2 * self.concurrency)
        self.cmd_fd, self.out_fd, self.wakeup_fd = cmd_fd, out_fd, wakeup_fd
        self.cache = CodeCache()
        self.runs: dict[str, Run] = {}        # not yet reported
        self.waiting: list[tuple] = []        # keys of runs not started, in date order
        self.running: set[str] = set()
        self.by_pid: dict[int, Run] = {}      # children not yet reaped
        self.forked_waiting = 0
        self.saturated_at_epoch_s = float("-inf")   # the last time a due run found every slot taken
        self.seq = 0
        self.cmd_buf = b""
        self.cmd_closed = False
        self.stopping = False
        self.stop_deadline_mono_s = self.stop_grace_s = None
        self.sel = selectors.DefaultSelector()
        for fd in (cmd_fd, wakeup_fd):
            os.set_blocking(fd, False)
        self.sel.register(cmd_fd, selectors.EVENT_READ, ("cmd", None))
        self.sel.register(wakeup_fd, selectors.EVENT_READ, ("wakeup", None))

    # --- the loop ---------------------------------------------------------------

    def serve(self):
        self.emit({"ev": "ready"})
        while True:
            self.reap()
            self.enforce_deadlines(time.monotonic())
            self.dispatch(time.time())
            self.fork_ahead(time.time())
            if (self.stopping or self.cmd_closed) and not self.runs and not self.by_pid:
                return
            wait_s = self.next_wake(time.time(), time.monotonic())
            for key, _ in self.sel.select(max(0.0, wait_s)):
                kind, run = key.data
                if kind == "cmd":
                    self.read_commands()
                elif kind == "wakeup":
                    self.drain_fd(self.wakeup_fd, None)
                else:
                    self.drain_run(run, kind)

    def next_wake(self, now_epoch_s: float, now_mono_s: float) -> float:
        """Seconds until something is due."""
        wake = [IDLE_WAKE_S]
        unforked = next((k for k in self.waiting if self.runs[k[2]].state == "pending"), None)
        if unforked and self.forked_waiting < self.prefork_max:
            wake.append(unforked[0] - self.fork_ahead_s - now_epoch_s)
        for run_id in self.running:
            run = self.runs[run_id]
            if run.timeout_s is not None and run.kill_reason is None:
                wake.append(run.started_at_mono_s + run.timeout_s - now_mono_s)
            if run.sigkill_at_mono_s is not None:
                wake.append(run.sigkill_at_mono_s - now_mono_s)
        if self.stop_deadline_mono_s is not None:
            wake.append(self.stop_deadline_mono_s - now_mono_s)
        if self.waiting and len(self.running) < self.concurrency:
            wake.append(self.waiting[0][0] - GRANT_AHEAD_S - now_epoch_s)
        return min(wake)

    # --- commands -----------------------------------------------------------------

    def read_commands(self):
        while True:
            try:
                chunk = os.read(self.cmd_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                self.worker_gone()
                return
            self.cmd_buf += chunk
        *lines, self.cmd_buf = self.cmd_buf.split(b"\n")
        for line in lines:
            if line.strip():
                self.handle(json.loads(line))

    def handle(self, cmd: dict):
        op = cmd.get("op")
        if op == "submit":
            self.submit(cmd)
        elif op == "cancel":
            self.cancel(cmd["run_id"])
        elif op == "reload":
            self.cache.clear()
        elif op == "stop":
            self.stop(float(cmd.get("grace_s", 0)))

    def submit(self, cmd: dict):
        if cmd["run_id"] in self.runs:
            warn(f"run {cmd['run_id']} submitted twice: ignoring the second")
            return
        self.seq += 1
        run = Run(cmd, self.seq, time.time())
        self.runs[run.run_id] = run
        if self.stopping:
            self.not_started(run)
            return
        bisect.insort(self.waiting, run.key)

    def cancel(self, run_id: str):
        run = self.runs.get(run_id)
        if run is None:
            return
        if run.state in ("pending", "forked"):
            self.drop(run)
            self.report(run, False, None, {"type": "Canceled", "message": "canceled",
                                           "traceback": None})
        elif run.state == "running" and run.kill_reason is None:
            self.kill(run, "Canceled", "canceled", signal.SIGTERM)

    def stop(self, grace_s: float):
        if self.stopping:
            return
        self.stopping = True
        self.stop_grace_s = grace_s
        self.stop_deadline_mono_s = time.monotonic() + grace_s
        for key in list(self.waiting):
            self.not_started(self.runs[key[2]])

    def worker_gone(self):
        """The worker closed our stdin (it exited or died): nobody will read outcomes."""
        self.cmd_closed = True
        self.sel.unregister(self.cmd_fd)
        for run in list(self.runs.values()):
            if run.state == "running":
                self.signal_group(run, signal.SIGKILL)
            elif run.state in ("pending", "forked"):
                self.drop(run)
            self.runs.pop(run.run_id, None)
        self.running.clear()

    # --- scheduling ---------------------------------------------------------------

    def fork_ahead(self, now_epoch_s: float):
        head = self.waiting[0] if self.waiting else None
        if (head and self.runs[head[2]].state == "forked"
                and len(self.running) < self.concurrency
                and head[0] - GRANT_AHEAD_S - now_epoch_s < FORK_GUARD_S):
            return   # the next grant comes first
        for at_epoch_s, _, run_id in self.waiting:
            if at_epoch_s - now_epoch_s > self.fork_ahead_s or self.forked_waiting >= self.prefork_max:
                break
            run = self.runs[run_id]
            if run.state == "pending":
                self.fork(run)

    def dispatch(self, now_epoch_s: float):
        while self.waiting and self.waiting[0][0] - GRANT_AHEAD_S <= now_epoch_s:
            if len(self.running) >= self.concurrency:
                # Every run due by now waits for a slot. Remembering when is enough to
                # tell later (go) whether a run waited: it did iff it was due by then.
                self.saturated_at_epoch_s = now_epoch_s
                return
            run = self.runs[self.waiting.pop(0)[2]]
            if run.state == "pending" and not self.fork(run):
                continue
            self.go(run)

    def go(self, run: Run):
        """Give the run its slot: its child starts the job at the date (now, if overdue)."""
        now_epoch_s, now_mono_s = time.time(), time.monotonic()
        ahead_s = max(0.0, run.at_epoch_s - now_epoch_s)
        run.started_at_epoch_s, run.started_at_mono_s = now_epoch_s + ahead_s, now_mono_s + ahead_s
        try:
            os.write(run.go_w, b"g")
        except OSError:
            pass   # the child is already gone: reaping reports how it ended
        os.close(run.go_w)
        run.go_w = None
        run.state = "running"
        self.forked_waiting -= 1
        self.running.add(run.run_id)
        # It waited for a slot: the worker held it back, or it was due while all were taken.
        if run.queued_since_epoch_s is not None or run.at_epoch_s <= self.saturated_at_epoch_s:
            run.queued_ms = max(0.0, run.started_at_epoch_s - run.ready_at_epoch_s()) * 1000
        self.emit({"ev": "start", "run_id": run.run_id, "started_at_s": run.started_at_epoch_s})

    def drop(self, run: Run):
        """Forget a run that has not started; its waiting child, if any, goes away."""
        if run.key in self.waiting:
            self.waiting.remove(run.key)
        if run.state == "forked":
            os.close(run.go_w)   # EOF on its go pipe: it exits without running anything
            run.go_w = None
            self.forked_waiting -= 1
            self.signal_group(run, signal.SIGKILL)
        run.state = "dropped"

    def not_started(self, run: Run):
        self.drop(run)
        self.report(run, False, None, {
            "type": "NotStarted", "message": "not started: the worker is shutting down",
            "traceback": None})

    def enforce_deadlines(self, now_mono_s: float):
        for run_id in list(self.running):
            run = self.runs[run_id]
            if (run.timeout_s is not None and run.kill_reason is None
                    and now_mono_s >= run.started_at_mono_s + run.timeout_s):
                self.kill(run, "Timeout", f"timed out after {_seconds(run.timeout_s)} s",
                          signal.SIGKILL)
            if (self.stop_deadline_mono_s is not None and now_mono_s >= self.stop_deadline_mono_s
                    and run.kill_reason is None):
                self.kill(run, "WorkerShutdown", "killed at worker shutdown after grace of "
                          f"{_seconds(self.stop_grace_s)} s", signal.SIGKILL)
            if run.sigkill_at_mono_s is not None and now_mono_s >= run.sigkill_at_mono_s:
                run.sigkill_at_mono_s = None
                self.signal_group(run, signal.SIGKILL)

    def kill(self, run: Run, kind: str, reason: str, sig: int):
        run.kill_type, run.kill_reason = kind, reason
        run.sigkill_at_mono_s = None if sig == signal.SIGKILL else time.monotonic() + self.kill_grace_s
        self.signal_group(run, sig)

    def signal_group(self, run: Run, sig: int):
        try:
            os.killpg(run.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # --- children ---------------------------------------------------------------

    def fork(self, run: Run) -> bool:
        """Fork the run's child, waiting on its go pipe. False if that failed (reported)."""
        try:
            path = resolve(self.jobs_dir, run.job, self.trusted_uids)
            code = self.cache.get(path)
        except (JobError, SyntaxError, ValueError) as exc:
            path, code = None, exc
        except OSError as exc:
            path, code = None, JobError(f"cannot read job {run.job!r}: {exc}", "JobNotFound")
        pipes = [os.pipe() for _ in range(3)]
        (go_r, go_w), (result_r, result_w), (out_r, out_w) = pipes
        blocked = _signal.pthread_sigmask(signal.SIG_BLOCK, ALL_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    run_child(run, path, code, go_r, result_w, out_w, blocked,
                              journal_fd=self.journal_fd, memory_limit_bytes=self.memory_limit_bytes)
                finally:
                    os._exit(EXIT_SOFTWARE)
        except OSError as exc:
            for fd in (go_r, go_w, result_r, result_w, out_r, out_w):
                os.close(fd)
            if run.key in self.waiting:
                self.waiting.remove(run.key)
            run.state = "dropped"
            self.report(run, False, None, {"type": "ForkError",
                                           "message": f"could not start a process: {exc}",
                                           "traceback": None})
            return False
        finally:
            _signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        try:
            os.setpgid(pid, pid)   # also done in the child: whoever runs first wins the race
        except OSError:
            pass
        for fd in (go_r, result_w, out_w):
            os.close(fd)
        run.pid, run.go_w, run.result_r, run.out_r = pid, go_w, result_r, out_r
        run.state = "forked"
        self.forked_waiting += 1
        self.by_pid[pid] = run
        for fd, kind in ((result_r, "result"), (out_r, "out")):
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, (kind, run))
        return True

    def drain_run(self, run: Run, kind: str):
        if kind == "result":
            self.drain_fd(run.result_r, run, result=True)
        else:
            self.drain_fd(run.out_r, run, result=False)

    def drain_fd(self, fd, run, result=False):
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return
            if not chunk:
                if run is not None:
                    self.sel.unregister(fd)
                    os.close(fd)
                    if result:
                        run.result_r = None
                    else:
                        run.out_r = None
                return
            if run is None:
                continue
            if not result:
                self.take_output(run, chunk)
            elif len(run.result_buf) + len(chunk) > RESULT_MAX_BYTES:
                run.result_overflow = True
            else:
                run.result_buf += chunk
                if run.result_buf.endswith(b"\n"):
                    # The outcome is in: the job's code is over and the child only
                    # exits now, so its slot is free before it is even reaped.
                    self.running.discard(run.run_id)

    def reap(self):
        while True:
            try:
                # WNOWAIT: the dead child stays a zombie, so its process group id
                # cannot be reused while we kill what the job left behind in it.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            try:
                os.killpg(info.si_pid, signal.SIGKILL)
            except OSError:
                pass
            _, status = os.waitpid(info.si_pid, 0)
            run = self.by_pid.pop(info.si_pid, None)
            if run is not None:
                self.finish(run, status)

    def finish(self, run: Run, status: int):
        # The child wrote everything before it exited; what is left is in the pipes.
        if run.result_r is not None:
            self.drain_fd(run.result_r, run, result=True)
        if run.out_r is not None:
            self.drain_fd(run.out_r, run, result=False)
        for fd in (run.result_r, run.out_r):
            if fd is not None:   # a grandchild we could not kill may still hold it open
                self.sel.unregister(fd)
                os.close(fd)
        run.result_r = run.out_r = None
        if run.state == "dropped":
            return
        if run.state == "forked":   # died before its date (killed from outside?)
            self.drop(run)
            run.state = "forked"
        outcome = None
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_OK and run.result_buf:
            try:
                outcome = json.loads(run.result_buf)
            except ValueError:
                outcome = None
        if run.result_overflow:
            outcome = {"ok": False, "error": {
                "type": "ResultError", "message": f"the job's result is larger than "
                f"{RESULT_MAX_BYTES} bytes", "traceback": None}}
        if outcome is None:
            if run.kill_reason:
                kind, message = run.kill_type, run.kill_reason
            else:
                kind, message = describe_exit(status)
                if run.state == "forked":
                    message += " before its date"
            outcome = {"ok": False, "error": {"type": kind, "message": message,
                                              "traceback": None}}
        self.send_output(run)
        self.report(run, outcome["ok"], outcome.get("result"), outcome.get("error"))

    def take_output(self, run: Run, chunk: bytes):
        """What the job wrote: kept whole until it is logged, its tail for the outcome."""
        if self.output_limit:
            run.out_tail += chunk
            del run.out_tail[:-self.output_limit]
        run.out_chunk += chunk
        if len(run.out_chunk) >= OUTPUT_CHUNK_BYTES:
            self.send_output(run, final=False)

    def send_output(self, run: Run, final: bool = True):
        """To the worker's log, in pieces cut on line ends where there is one; before the
        run's end only whole pieces (a line still being written waits for the rest)."""
        while len(run.out_chunk) >= (1 if final else OUTPUT_CHUNK_BYTES):
            piece = run.out_chunk[:OUTPUT_CHUNK_BYTES]
            if (len(run.out_chunk) > OUTPUT_CHUNK_BYTES or not final) and b"\n" in piece:
                piece = piece[:piece.rindex(b"\n") + 1]
            del run.out_chunk[:len(piece)]
            self.emit({"ev": "output", "run_id": run.run_id, "task_id": run.task_id, "job": run.job,
                       "text": piece.decode("utf-8", "replace")})

    def report(self, run: Run, ok: bool, result, error):
        self.runs.pop(run.run_id, None)
        self.running.discard(run.run_id)
        self.emit({"ev": "outcome", "run_id": run.run_id, "task_id": run.task_id, "ok": ok,
                   "result": result if ok else None, "error": None if ok else error,
                   "started_at_s": run.started_at_epoch_s, "finished_at_s": time.time(),
                   "queued_ms": run.queued_ms,
                   "output": output_text(run.out_tail) if run.out_tail else None})

    def emit(self, event: dict):
        if self.cmd_closed:
            return
        data = memoryview(json.dumps(event).encode() + b"\n")
        try:
            while data:
                data = data[os.write(self.out_fd, data):]
        except BrokenPipeError:
            self.cmd_closed = True


def output_text(tail: bytes) -> str:
    """A tail of output as text: a character cut at its start by the tail is dropped."""
    return bytes(tail).decode("utf-8", "replace").lstrip("\ufffd")


def _log(priority: int, text: str):
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    lines = [f"after runner: {line}" for line in text.splitlines()]
    out = "\n".join((f"<{priority}>" if journal else "") + line for line in lines)
    try:
        os.write(2, out.encode("utf-8", "replace") + b"\n")
    except OSError:
        pass


def warn(text: str):
    _log(4, text)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = json.loads(argv[0])
    # The worker decides when we stop (it closes our stdin or says "stop"); a
    # Ctrl-C or a SIGTERM sent to the whole service must not orphan running jobs.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    cmd_fd, out_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)   # a stray print() must never corrupt the event pipe
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wakeup_w)
    Zygote(config, cmd_fd, out_fd, wakeup_r).serve()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
