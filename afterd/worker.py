"""The worker: one loop owns the state; threads only hand it events.

Threads and what they hand in (through `_post`, which wakes the loop's select):
  feed       batches of changed task documents (it waits until they are handled,
             then saves its checkpoint)
  writer     the result of each document write: written / conflict / refused / accepted
  runner     a run started; a run's outcome
  heartbeat  until when our lease holds; tasks of a peer whose lease ended
Signal handlers only set flags (signal.set_wakeup_fd wakes the select).

`turn(now_s, now_m)` is one turn of the loop at an instant passed in; `run()` only
supplies the clock, waits, and stops. The loop turns events into decisions
(decide.py, pure) and acts on them: actions.py (claim, arm, refuse, hold, forget),
runs.py (start, `running`, outcome), recovery.py (a dead process's runs). Every
write is a conditional update on the `_rev` the decision was made from, and at most
one write per document is in flight; a 409 hands back the current document and the
loop decides again from it. The journal is committed once per turn (group commit).
Start-up and the wiring of the threads are in service.py.
"""

import logging
import os
import select
import signal
import threading
from collections import deque
from datetime import datetime, timezone

from afterd import claims, clock, journal
from afterd.actions import Acting
from afterd.couch import CouchError
from afterd.decide import RUN_PHASES, rev_gen
from afterd.entry import Entry
from afterd.exits import EXIT_OK, EXIT_SOFTWARE
from afterd.logs import about_doc
from afterd.metrics import Metrics
from afterd.notify import Notifier, status_line
from afterd.recovery import Recovering
from afterd.runner import FORK_AHEAD_S
from afterd.runs import Running
from afterd.task import FINAL
from afterd.timers import Timers
from afterd.writer import CONFLICT, REFUSED, WRITTEN

log = logging.getLogger("after.worker")

# Runs handed to the runner and not finished, per concurrency slot. The rest stay armed
# here, a few hundred bytes each: the zygote forks from its own memory, and every run
# queued there makes each fork slower (about 80 us per MiB on the bench machine: 20,000
# queued runs cost ~3 ms a fork). Enough that the zygote always has the next ones.
OUTSTANDING_PER_SLOT = 4
IDLE_WAKE_S = 5.0        # upper bound on a select, for STATUS and lease checks


class Worker(Acting, Running, Recovering):
    def __init__(self, name: str, settings, notifier: Notifier | None = None):
        self.name = name
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.state_dir = settings.state_dir / name
        self.entries: dict[str, Entry] = {}
        self.timers = Timers()
        self.runs: dict[str, str] = {}          # run id -> task id
        self._max_outstanding = max(16, OUTSTANDING_PER_SLOT * settings.concurrency)
        self._backlog_since_s: float | None = None   # due runs wait for room since then
        self._events: deque = deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_requests = 0
        self._reload_requested = False
        self.lease_until_s: float | None = None  # monotonic; None until the first renewal
        self._lease_lapsed = False
        self._problems: dict[str, str] = {}     # source -> what is wrong now, for STATUS
        self._predecessor: dict[str, journal.RunRecord] = {}
        self._after_commit: list = []
        self._held: dict[str, tuple[float, dict]] = {}   # task id -> (when, its `running` field)
        self._forgotten: dict[str, int] = {}     # recently forgotten task -> its last rev generation
        self.cluster = False                    # n > 1 copies: runs start behind fences (fences.py)
        self.min_repeat_s = settings.min_repeat_s   # the database's floor (service.run_worker)
        self.fences = None
        self._view: tuple[str, ...] | None = None   # live processes sharing our unowned tasks
        self._parked: dict[str, dict] = {}       # unowned tasks in another process's share
        self._alive: frozenset = frozenset()     # processes whose lease holds, as last read
        self.now_s, self.now_m = clock.epoch_s(), clock.monotonic_s()   # the turn's instant
        # metrics: host and slot are known once attach() is told them
        self.metrics = Metrics(settings.metrics_dir, worker=name, host=settings.host, slot=0,
                               started_s=self.now_s, now_m=self.now_m)

    def attach(self, me, journal_, predecessor, *, runner, heartbeat, writer, feed, fences=None):
        """The parts the loop drives (service.start builds them; a test, its own):
        who we are, our journal slot and what our predecessor in it left open."""
        self.me, self.journal, self._predecessor = me, journal_, predecessor
        self.runner, self.heartbeat, self.writer, self.feed = runner, heartbeat, writer, feed
        self.fences = fences
        heartbeat.on_view = lambda view, alive: self._post("view", view, alive)
        heartbeat.on_own = lambda docs: self._post("own", docs)
        self.metrics.host, self.metrics.slot = me.host, me.slot   # metrics

    def _post(self, *event):
        self._events.append(event)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake anyway

    def _on_signal(self, signum, frame):
        # Only flags here: logging and I/O are not safe in a signal handler.
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requests += 1

    def _feed_batch(self, docs):
        """Called in the feed thread: hand the batch to the loop and wait until it is handled."""
        done = threading.Event()
        self._post("docs", docs, done)
        while not done.wait(1.0):
            if self._stop_requests:
                raise RuntimeError("worker stopping")  # no checkpoint for an unhandled batch

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
        """Turn the loop on the clock until the worker stops: the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self.notifier.ready()
        log.info("worker %s ready: %d tasks armed", self.name, len(self.timers))
        watchdog_s = self.notifier.watchdog_interval_s()
        next_watchdog = 0.0
        hang_at = _test_hang_at()
        while True:
            now_m = clock.monotonic_s()
            if hang_at is not None and now_m > hang_at:
                log.warning("AFTER_TEST_HANG_AFTER_S: hanging the main loop on purpose")
                while True:
                    select.select([], [], [], 3600)
            if watchdog_s and now_m >= next_watchdog:
                self.notifier.watchdog()
                next_watchdog = now_m + watchdog_s
            if self._stop_requests:
                return self._shutdown()
            self.turn(clock.epoch_s(), clock.monotonic_s())
            self._wait(watchdog_s, next_watchdog)

    def turn(self, now_s: float, now_m: float) -> None:
        """One turn of the loop at this instant (epoch and monotonic seconds): handle the
        events the threads handed in, start the runs that are due, commit the journal,
        then do what waited for that commit. Reads no clock: a test steps time by
        calling it (tests/stepped.py)."""
        self.now_s, self.now_m = now_s, now_m
        if self._reload_requested:
            self._reload_requested = False
            self._reload()
        self._drain_events()
        self._start_due_runs()
        self.journal.commit()
        self._flush_after_commit()
        self._release_held(now_m)
        self._update_status()
        self._write_metrics()

    def now(self) -> datetime:
        """The turn's instant as a datetime (UTC)."""
        return datetime.fromtimestamp(self.now_s, timezone.utc)

    def _wait(self, watchdog_s, next_watchdog):
        if self._events or self._stop_requests or self._reload_requested:
            return
        timeout_s = IDLE_WAKE_S
        nxt = self.timers.next_deadline()
        if nxt is not None and len(self.runs) < self._max_outstanding:   # else a run's end wakes us
            timeout_s = min(timeout_s, max(0.0, nxt - FORK_AHEAD_S - clock.epoch_s()))
        if watchdog_s:
            timeout_s = min(timeout_s, max(0.0, next_watchdog - clock.monotonic_s()))
        if self._held:
            timeout_s = min(timeout_s, max(0.0, next(iter(self._held.values()))[0] - clock.monotonic_s()))
        try:
            ready, _, _ = select.select([self._wake_r], [], [], timeout_s)
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass

    def _drain_events(self):
        for _ in range(len(self._events)):
            kind, *args = self._events.popleft()
            getattr(self, "_ev_" + kind)(*args)

    def _flush_after_commit(self):
        actions, self._after_commit = self._after_commit, []
        for action in actions:
            action()

    def _ev_docs(self, docs, done):
        try:
            self._decide_all(docs)
            for doc in docs:
                if str(doc.get("_id", "")).startswith(claims.HEARTBEAT_PREFIX) and doc.get("stopped"):
                    self.heartbeat.scan_soon()  # a peer released its tasks: take them now
        finally:
            # The checkpoint may only cover this batch once its decisions are durable.
            self.journal.commit()
            self._after_commit.append(done.set)

    def _ev_write(self, kind, write, info):
        doc_id = write.doc["_id"]
        tag = write.tag
        entry = self.entries.get(doc_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("write %s (%s): %s %s", doc_id, tag, kind, info if kind == WRITTEN else "",
                      extra=about_doc(write.doc, in_text=True))
        if tag.startswith("outcome:") and kind != CONFLICT:
            self.journal.add("written", tag.split(":", 1)[1])
        if tag == "follow-up":
            # Created (WRITTEN), or created before (CONFLICT: a replay): nothing to hold.
            if kind == REFUSED:
                log.error("CouchDB refused the follow-up task %s of %s: %s", doc_id,
                          (write.doc.get("parent") or {}).get("id"), info, extra=about_doc(write.doc))
            return
        if entry is None:
            return
        if kind == WRITTEN and rev_gen(info) <= rev_gen(entry.rev) and not entry.writing:
            # The answer to a write sent again after its first answer was lost (it reached
            # the copies then): we hold newer already, and no write of ours is in flight.
            return
        entry.writing = False
        if kind == WRITTEN:
            entry.doc = {**write.doc, "_rev": info}
            if tag.startswith("outcome:"):
                # The run is closed; whatever comes next starts afresh.
                entry.outcome, entry.run_id = None, None
            latest, entry.latest = entry.latest, None
            self._after_write(entry, tag)
            if latest is not None and entry.writing is False:
                self._decide(latest)
        elif kind == CONFLICT:
            latest, entry.latest = entry.latest, None
            if info is None:
                self._forget(doc_id, "deleted")
                return
            if latest is not None and rev_gen(latest.get("_rev")) > rev_gen(info.get("_rev")):
                # The feed brought a newer version while the write was out than the re-read
                # (one copy, maybe behind) found: decide on that (our own write could have
                # landed with its answer lost, and this re-read missed it).
                info = latest
            if entry.outcome is not None and (tag.startswith("outcome:") or entry.phase == "finishing"):
                # Put the outcome on the current version: its own write lost a race, or the
                # run ended while its `running` write did (a user's edit, a retried write).
                self._write_outcome(entry, info)
                return
            if tag == "running" and entry.confirm_first and entry.phase == "starting":
                # Not confirmed: it never started. Close the intent and decide afresh.
                self.runs.pop(entry.run_id, None)
                self.journal.add("written", entry.run_id)
                entry.phase, entry.run_id, entry.confirm_first = "new", None, False
            self._decide(info)
        else:  # REFUSED: CouchDB's validation said no to a worker write: a bug, say so loudly
            log.error("CouchDB refused our update of task %s (%s): %s", doc_id, tag, info,
                      extra=about_doc(write.doc, in_text=True))
            self._forget(doc_id, "refused")

    def _after_write(self, entry, tag):
        doc = entry.doc
        status = doc.get("status")
        if tag == "running" and entry.confirm_first and entry.phase == "starting":
            entry.confirm_first = False
            self._submit(entry)
            return
        if entry.outcome is not None and entry.phase == "finishing":
            self._write_outcome(entry, doc)
            return
        if claims.owner_of(doc) not in (None, self.me.process) and entry.phase not in RUN_PHASES:
            self._forget(doc["_id"], f"held by {claims.owner_of(doc)}")   # our run's outcome, on a task taken over
            return
        if status in FINAL:
            self._forget(doc["_id"], status)
        elif status == "scheduled" and entry.phase in ("new", "finishing"):
            self._arm(entry)
        elif status == "paused":
            self.timers.disarm(entry.id)
            entry.phase = "held"

    def _ev_lease(self, until_s, why):
        if until_s is None:
            self._set_problem("lease", f"heartbeat failed: {why}")
            return
        self._set_problem("lease", None)
        self.metrics.couchdb_answered(self.now_m)   # metrics
        # Lapsed: a start found it gone, or it ran out before this renewal came back
        # (even if no task came due meanwhile to notice).
        lapsed = self._lease_lapsed or (self.lease_until_s is not None
                                        and self.now_m >= self.lease_until_s)
        self.lease_until_s = until_s
        if lapsed:
            # Peers may have taken any of our tasks while our lease was gone, and our
            # feed may not have told us yet: every task not yet started confirms its
            # ownership with a conditional write before it runs.
            self._lease_lapsed = False
            self._set_problem("paused", None)
            log.info("lease renewed after it had lapsed: resuming, confirming ownership run by run")
            for entry in self.entries.values():
                if entry.phase in ("new", "armed", "paused"):
                    entry.confirm_first = True
                if entry.phase == "paused":
                    self._arm(entry)

    def _ev_peer(self, beat, process, tasks, runs):
        self._take_over(beat, process, tasks, runs)

    def _ev_feed(self, state, why):
        if state == "fatal":
            log.error("the change feed stopped for good: %s", why)
            self._set_problem("feed", f"change feed failed: {why}")
            self._stop_requests += 1
            self._fatal = True
        elif state == "retrying":
            self._set_problem("feed", f"change feed {why}")
        else:
            self._set_problem("feed", None)

    def _ev_problem(self, source, why):
        self._set_problem(source, why)

    def _set_problem(self, source, why):
        """What is wrong now, for STATUS; logged when it starts and when it ends."""
        had = self._problems.get(source)
        self.metrics.problem(source, bool(why), self.now_m)   # metrics
        if why:
            if had is None:
                log.warning("%s", why)
            self._problems[source] = why
        elif had is not None:
            del self._problems[source]
            log.info("%s: recovered", source)

    def _reload(self):
        self.notifier.reloading()
        self.runner.reload()   # logs and counts the reload itself
        self.notifier.ready()

    def _update_status(self):
        nxt = self.timers.next_deadline()
        problem = "; ".join(dict.fromkeys(self._problems.values())) or None
        self.notifier.status(status_line(len(self.timers), self.runner.running(),
                                         _utc(nxt) if nxt is not None else None, problem))

    def _shutdown(self) -> int:
        self.notifier.stopping()
        log.info("stopping: no new runs; running jobs get %gs to finish", self.settings.stop_grace_s)
        self.timers = Timers()
        self.feed.stop()
        signal.signal(signal.SIGTERM, self._on_second_signal)
        signal.signal(signal.SIGINT, self._on_second_signal)
        grace_s = 0.0 if self._stop_requests > 1 else self.settings.stop_grace_s
        self.runner.stop(grace_s)
        # The runner reported every run (outcome or NotStarted) before stop() returned.
        self._drain_until_quiet()
        self.heartbeat.stop()
        flushed = self.writer.flush(timeout_s=max(5.0, self.settings.stop_grace_s))
        self._drain_until_quiet()
        if flushed:
            try:
                # Tell peers at once that our tasks are free (one write, not one per task).
                self.heartbeat.renew(stopped=True)
            except CouchError as e:
                log.warning("could not release our tasks: %s (peers take them when our lease ends)", e)
        else:
            log.warning("CouchDB did not take every outcome before shutdown; the journal keeps them")
        self.writer.stop()
        if self.fences is not None:
            self.fences.stop()
        self.metrics.up = 0   # metrics: the last file says the worker stopped cleanly
        self._write_metrics(force=True)
        self.journal.close()
        log.info("worker %s stopped", self.name)
        return EXIT_SOFTWARE if getattr(self, "_fatal", False) else EXIT_OK

    def _drain_until_quiet(self):
        # Shutting down runs on the clock (run() stopped turning): events get its time.
        while self._events:
            self.now_s, self.now_m = clock.epoch_s(), clock.monotonic_s()
            self._drain_events()
            self.journal.commit()
            self._flush_after_commit()

    def _on_second_signal(self, signum, frame):
        self._stop_requests += 1
        os.kill(os.getpid(), signal.SIGKILL) if self._stop_requests > 2 else None


def _utc(epoch_s):
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def _test_hang_at():
    """AFTER_TEST_HANG_AFTER_S: make the main loop hang, so tests can see systemd's watchdog act."""
    value = os.environ.get("AFTER_TEST_HANG_AFTER_S")
    return clock.monotonic_s() + float(value) if value else None
