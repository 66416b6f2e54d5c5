"""A run's child: what happens in the process the zygote forks for one run, until _exit.

The zygote (zygote.py) forks; the child cuts itself loose (its own process group, dies
with the zygote, default signals, the job's output on one pipe), prepares the job's
module before the date, waits for the zygote's "go" and then for the date itself, runs
the job (jobapi.py), records its start and result in the worker's journal, writes the
outcome to the zygote and exits. Nothing here returns to the zygote's code.
"""

import ctypes
import gc
import os
import resource
import signal
import sys
# signal.pthread_sigmask turns every number into an enum member on each call; the C
# function underneath takes plain ints (see zygote.py).
import _signal
import time

from afterd.exits import EXIT_NOT_STARTED, EXIT_OK
from afterd.journal_records import encode, result_record, start_record
from afterd.jobapi import JobTask, encode_outcome, prepare_module, run_job

PR_SET_PDEATHSIG = 1      # <linux/prctl.h>
SPIN_S = 0.0005           # the last stretch before a date is spun, not slept (sleep overshoots)
MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1 << 20
_LIBC = ctypes.CDLL(None, use_errno=True)
# What the child calls first, prepared in the zygote: each Python object a child touches
# copies a page of the zygote's memory (its reference count is written), and ctypes'
# argument conversion and the signal module's enums touch many (about 100 page faults a
# child, measured with getrusage's ru_minflt between the steps of run_child).
_PRCTL = _LIBC.prctl
_PRCTL.argtypes, _PRCTL.restype = (ctypes.c_int, ctypes.c_ulong), ctypes.c_int
_SIGKILL = int(signal.SIGKILL)
_DEFAULT_SIGNALS = tuple(int(s) for s in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP))


def run_child(run, path, code, go_r, result_w, out_w, blocked, *, journal_fd, memory_limit_bytes):
    """In the forked child: wait for the date, run the job, write its outcome, _exit."""
    journal = ChildJournal(journal_fd)
    os.setpgid(0, 0)   # its own group, so a kill reaches the job's subprocesses too
    zygote_pid = os.getppid()
    # If the zygote is killed outright, its children must not run on unwatched.
    _PRCTL(PR_SET_PDEATHSIG, _SIGKILL)
    if os.getppid() != zygote_pid:
        os._exit(EXIT_NOT_STARTED)
    _signal.set_wakeup_fd(-1)
    for sig in _DEFAULT_SIGNALS:
        _signal.signal(sig, _signal.SIG_DFL)   # not signal.signal: it makes enums of both
    _signal.pthread_sigmask(_signal.SIG_SETMASK, blocked)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    log_fd = os.dup(2)          # the worker's stderr, for task.logger (jobapi.LOG_FD)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)           # stdout and stderr: one pipe, in the order written
    close_all_but({0, 1, 2, go_r, result_w, journal.fd, log_fd})
    import afterd.jobapi as jobapi
    jobapi.LOG_FD = log_fd
    # The job will not free the zygote's objects: keep the collector from walking
    # (and so copying, page by page) what the child inherited.
    gc.freeze()
    if memory_limit_bytes:
        limit = int(memory_limit_bytes)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.dont_write_bytecode = True   # never leave __pycache__ in the jobs folder
    # Everything that is not the job's own code happens before the date.
    task = JobTask(run.task, run.job, run.run_id)
    module = prepare_module(f"after_job_{run.job}", path)
    if os.read(go_r, 1) != b"g":
        os._exit(EXIT_NOT_STARTED)
    os.close(go_r)
    wait_until(run.at_epoch_s)
    outcome = run_job(code, module, path, task, memory_limit_bytes,
                      on_begin=lambda: journal.start(run.run_id))
    encoded, sent = encode_outcome(outcome)
    journal.result(run, sent)
    data = memoryview(encoded)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    while data:
        data = data[os.write(result_w, data):]
    os._exit(EXIT_OK)


class ChildJournal:
    """The child's own records in the worker's journal: its start at its date, just
    before the job's first line (a worker killed the next instant still knows the run
    began), and its result (which survives a worker killed before it heard of it)."""

    def __init__(self, fd: int | None):
        self.fd = fd
        self.began_at_epoch_s = None

    def start(self, run_id: str):
        if self.fd is None:
            return
        self.began_at_epoch_s = time.time()
        self.append(start_record(run_id, self.began_at_epoch_s))

    def result(self, run, outcome: dict):
        if self.fd is None or self.began_at_epoch_s is None:
            return
        self.append(result_record(run.run_id, run.task_id, outcome, began_at_epoch_s=self.began_at_epoch_s,
                                  finished_at_epoch_s=time.time(), ready_at_epoch_s=run.ready_at_epoch_s()))

    def append(self, record: dict):
        try:
            os.write(self.fd, encode(record))
        except (OSError, TypeError, ValueError):
            pass   # the pipe to the zygote still carries the outcome; the journal is a safety net


def close_all_but(keep: set):
    """Close every descriptor not in `keep` (close_range(2) under os.closerange: a few
    system calls, where listing /proc/self/fd and closing one by one took hundreds)."""
    low = 0
    for fd in sorted(fd for fd in keep if fd is not None and fd >= 0):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, MAX_FD)


def wait_until(epoch_s: float):
    """Return at epoch_s: sleep most of the way, spin the last SPIN_S (sleep overshoots)."""
    rest_s = epoch_s - time.time()
    if rest_s > SPIN_S:
        time.sleep(rest_s - SPIN_S)
    while time.time() < epoch_s:
        pass
