"""The worker: one loop owns the state; threads only hand it events.

Threads and what they hand in (through `_post`, which wakes the loop's select):
  feed       batches of changed task documents (it waits until they are handled,
             then saves its checkpoint)
  writer     the result of each document write: written / conflict / refused
  runner     a run started; a run's outcome
  heartbeat  until when our lease holds; tasks of a peer whose lease ended
Signal handlers only set flags (signal.set_wakeup_fd wakes the select).

The loop turns events into decisions: claim, arm, start, record, write. Every
write is a conditional update on the `_rev` the decision was made from, and at
most one write per document is in flight; a 409 hands back the current
document and the loop decides again from it. Durable order for a run: journal
intent (fsync) -> runner; outcome -> journal (fsync) -> CouchDB -> journal
`written`. The journal is committed once per loop turn (group commit).
"""

import json
import logging
import os
import select
import signal
import socket
import zlib
from collections import deque

from afterd import claims, clock, decide, journal
from afterd import outcome as outcomes
from afterd.claims import Identity
from afterd.couch import Couch, CouchError, Unauthorized, Unavailable
from afterd.exits import EXIT_NOPERM, EXIT_OK, EXIT_SOFTWARE, EXIT_UNAVAILABLE
from afterd.feed import CLAIM_RACE_GRACE_S, Feed, has_conflicts, is_rivals, resolve_conflict, without_conflicts
from afterd.lease import ACTIVE, Heartbeat, confirmed_expired
from afterd.logs import about, about_doc, setup_logging
from afterd.metrics import Metrics, outcome_kind
from afterd.notify import Notifier, status_line
from afterd.runner import FORK_AHEAD_S, Runner, RunSpec
from afterd.task import FINAL, TaskError, crash_retries, format_date, normalize_status, parse_date, parse_task
from afterd.timers import Timers
from afterd.writer import ACCEPTED, CLAIM, CONFIRM, CONFLICT, REFUSED, WRITTEN, Write, Writer

log = logging.getLogger("after.worker")

START_BATCH_MAX = 512    # runs started per loop turn, so the loop keeps answering
# Runs handed to the runner and not finished, per concurrency slot. The rest stay armed
# here, a few hundred bytes each: the zygote forks from its own memory, and every run
# queued there makes each fork slower (about 80 us per MiB on the bench machine: 20,000
# queued runs cost ~3 ms a fork). Enough that the zygote always has the next ones.
OUTSTANDING_PER_SLOT = 4
IDLE_WAKE_S = 5.0        # upper bound on a select, for STATUS and lease checks
FORGOTTEN_MAX = 100_000  # finished tasks remembered, to tell stale feed echoes apart
# A run's `running` write waits until it has run this long: a run that ends sooner is
# written once, as its outcome (two revisions per run, not three). Under load the outcome
# of a no-op run reaches the loop 0.1-0.3 s after its start (forks and writes compete for
# the CPU), hence half a second. Safe for at-most-once: the journal has the start, and a
# peer taking over treats a `scheduled` task due before our lease ended as possibly
# started (claims.may_have_started), exactly as it would a `running` one.
RUNNING_WRITE_HOLD_S = 0.5
# After a claim or confirmation answered 202 (fewer copies than the write quorum), the
# next confirmation waits this long: the cluster is missing nodes, and asking again at
# once would only add writes to it.
QUORUM_RETRY_S = 1.0


# Entry documents are deflated with a preset dictionary of the fields a task has: a
# typical pending task's 280 bytes of JSON become 90 (docs/benchmarks.md), for about
# 7 us per write and 2 us per read. Raw deflate, small window and memory: the state
# zlib sets up per call is most of the cost.
PACK_ZDICT = (b'"last_run":{"date":"20","status":"done","started_at":"20","finished_at":"20",'
              b'"queued_ms":0.0,"result":null},"runs":1,"repeat":{"days":1},"timeout":60,"retry":0,'
              b'"attempts":0,"error":null,"result":null,"started_at":"20","finished_at":"20",'
              b'"queued_ms":0,{"worker":"","date":"20","status":"scheduled","job":{"name":"",'
              b'"arguments":{}},"owner":{"process":"","host":"","pid":},"anchor":"20",'
              b'"occurrence":0,"_rev":"')
PACK_WBITS = -12


class Entry:
    """What the loop knows of one task it owns or is about to own.

    The document is held as compact JSON, deflated (PACK_ZDICT), and decoded on each
    read of `doc`: a worker holds every pending task (a million is a target), and a
    parsed document costs about 2,900 bytes where its JSON costs about 300 and its
    deflated JSON about 90 (docs/benchmarks.md). `doc` is read
    a few times per run, each read a fresh copy, so callers may change what they get.
    """
    __slots__ = ("id", "_packed", "phase", "run_id", "writing", "latest", "outcome", "cancel",
                 "confirm_first", "spec", "taking_from", "not_before_s")

    def __init__(self, doc: dict):
        self.id = doc.get("_id")       # the same str object as the key in Worker.entries
        self.doc = doc                 # latest version we know (with _rev)
        self.phase = "new"             # new | armed | paused | starting | running | finishing
        self.run_id: str | None = None
        self.writing = False           # a write of this doc is in flight
        self.latest: dict | None = None    # a newer version seen while writing: decide on it after
        self.outcome: dict | None = None   # outcome fields waiting to be written
        self.cancel = False            # the user asked to cancel the current run
        self.confirm_first = False     # write `running` and see it succeed before starting
        self.spec = None               # the RunSpec of the current run
        self.taking_from: str | None = None  # the dead process whose run we are settling
        self.not_before_s = 0.0        # epoch: after a claim that did not win, confirm no sooner

    @property
    def doc(self) -> dict:
        inflate = zlib.decompressobj(PACK_WBITS, zdict=PACK_ZDICT)
        return {"_id": self.id, **json.loads(inflate.decompress(self._packed) + inflate.flush())}

    @doc.setter
    def doc(self, value: dict):
        # Without _id: self.id has it, and ids are a tenth of a small document.
        body = {k: v for k, v in value.items() if k != "_id"}
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        deflate = zlib.compressobj(1, zlib.DEFLATED, PACK_WBITS, 1, zlib.Z_DEFAULT_STRATEGY, PACK_ZDICT)
        self._packed = deflate.compress(text) + deflate.flush()


class Worker:
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
        self._withdrawn: dict[str, str] = {}     # task -> our leaf withdrawn after a 202: never act on it
        self._unstarted: dict[str, None] = {}    # runs whose `running` we wrote, then did not start
        self._confirm_at_start: set[str] = set()  # our claims found among rivals at start-up
        # metrics: host and slot are known once start() has locked a slot
        self.metrics = Metrics(settings.metrics_dir, worker=name, host=settings.host, slot=0,
                               started_s=clock.epoch_s(), now_m=clock.monotonic_s())

    # -- events from threads -------------------------------------------------------

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

    # -- start-up ------------------------------------------------------------------

    def connect(self):
        """CouchDB answered, the database and the design document are in place."""
        s = self.settings
        self.couch = Couch(s.couchdb_url, s.database)
        self.couch.info()
        self.couch.ensure_database()
        self.couch.ensure_design()
        self.claim_race_grace_s = claim_race_grace(self.couch.quorum())

    def start(self):
        s = self.settings
        slot, self.journal, self._predecessor = journal.open_slot(self.state_dir)
        self.me = Identity(self.name, s.host or socket.gethostname(), slot, os.getpid())
        self.metrics.host, self.metrics.slot = self.me.host, slot   # metrics
        log.info("worker %s starting as %s (CouchDB %s, database %s, jobs %s)",
                 self.name, self.me.process, self.couch.safe_url, s.database, s.jobs_dir)
        self.runner = Runner(s.jobs_dir, on_outcome=lambda o: self._post("outcome", o),
                             on_start=lambda run, t: self._post("started", run, t),
                             concurrency=s.concurrency, kill_grace_s=s.kill_grace_s,
                             trusted_uids={0, os.geteuid()}, journal_path=self.journal.path,
                             memory_limit_bytes=s.memory_limit_bytes, output_limit=s.output_limit)
        self.runner.start()
        self.heartbeat = Heartbeat(Couch(s.couchdb_url, s.database), self.me, lease_s=s.lease_s,
                                   skew_margin_s=s.skew_margin_s, state_dir=self.state_dir,
                                   on_lease=lambda until, why: self._post("lease", until, why),
                                   on_peer=lambda *a: self._post("peer", *a),
                                   counters=self.metrics.heartbeat_fields)   # metrics
        self.lease_until_s = self.heartbeat.renew()
        self.writer = Writer(Couch(s.couchdb_url, s.database),
                             on_result=lambda kind, w, info: self._post("write", kind, w, info),
                             on_state=lambda ok, why: self._post("problem", "writer", None if ok else why))
        self.writer.start()
        checkpoint = f"after-feed-{self.me.process}"
        if self.couch.get_local(checkpoint) is None:
            # First start of this identity: everything before now comes from the load below.
            self.couch.put_local(checkpoint, {"seq": self.couch.update_seq()})
        self.feed = Feed(Couch(s.couchdb_url, s.database), self.name, checkpoint,
                         on_batch=self._feed_batch,
                         on_state=lambda state, why: self._post("feed", state, why),
                         owner_process=self.me.process, claim_race_grace_s=self.claim_race_grace_s)
        self._load()
        self.heartbeat.start()
        self.feed.start()

    def _load(self):
        """Arm every active task of this worker: ours, new ones, and those of dead peers."""
        found = self.couch.docs_with_prefix(claims.heartbeat_prefix(self.name))
        beats = {b["_id"][len(claims.HEARTBEAT_PREFIX):]: b for b in claims.heartbeats_of(self.name, found)}
        now = clock.now()
        active, foreign = set(), {}
        # Page by page, each decided and dropped before the next is read: a parsed page is
        # ~3 KB a task, the armed state ~0.5 KB (docs/benchmarks.md). A scan, not the
        # active_by_worker view: no index to build first (docs/benchmarks.md).
        for page in self.couch.scan({"worker": self.name, "status": {"$in": ACTIVE}}, conflicts=True):
            mine = []
            for doc in map(self._resolved, page):
                if doc.get("status") not in ACTIVE:
                    continue
                active.add(doc["_id"])
                owner = claims.owner_of(doc)
                if owner is None or owner == self.me.process:
                    mine.append(doc)
                else:
                    foreign.setdefault(owner, []).append(doc)
            self._decide_all(mine)
            for doc_id in self._confirm_at_start.intersection(d["_id"] for d in mine):
                entry = self.entries.get(doc_id)
                if entry is not None:
                    entry.confirm_first = True
        for process, tasks in foreign.items():
            beat = beats.get(process)
            runs = None
            if beat and beat.get("host") == self.me.host and isinstance(beat.get("slot"), int):
                runs = journal.read_if_dead(self.state_dir, beat["slot"])
            if runs is None:
                if not claims.lease_expired(beat, now, self.settings.skew_margin_s):
                    continue
                # The scan read one copy; a takeover rests on what a quorum says.
                beat = confirmed_expired(self.couch, claims.HEARTBEAT_PREFIX + process, now,
                                         self.settings.skew_margin_s)
                if beat is False:
                    continue
            self._take_over(beat, process, tasks, runs)
        # Runs our predecessor in this slot left open whose task is no longer active.
        for run_id, rec in self._predecessor.items():
            if rec.state != "written" and rec.task not in active:
                self.journal.add("written", run_id)   # the task moved on: nothing to write
        self._predecessor = {k: v for k, v in self._predecessor.items() if v.task in active}
        self.journal.commit()
        self._flush_after_commit()
        log.info("loaded %d active tasks: %d armed", len(active), len(self.timers))

    def _resolved(self, doc: dict) -> dict:
        """A task found at start-up, its conflicting revisions (a CouchDB cluster) resolved
        as the feed resolves them; as CouchDB chose if that fails now (its next change
        tries again)."""
        if not has_conflicts(doc):
            return doc
        try:
            resolved = resolve_conflict(self.couch, doc, defer_race=lambda _id: self.claim_race_grace_s > 0)
            if not is_rivals(resolved):
                return resolved
            # Rival claims, left to their 202 losers as in the feed. Nothing says whether
            # our own leaf among them was answered 201: take it, but confirm it before any
            # run (Worker._load): a confirmation beside a rival leaf does not win.
            mine = [d for d in resolved["_rivals"] if claims.owner_of(d) == self.me.process]
            if mine:
                self._confirm_at_start.add(doc["_id"])
                return without_conflicts(mine[0])
            return without_conflicts(doc)
        except (CouchError, LookupError, TypeError, ValueError) as e:   # wrong shapes too
            log.warning("task %s: conflicting revisions not resolved at start-up: %s", doc["_id"], e,
                        extra=about_doc(doc, in_text=True))
            return without_conflicts(doc)

    def _feed_batch(self, docs):
        """Called in the feed thread: hand the batch to the loop and wait until it is handled."""
        import threading

        done = threading.Event()
        self._post("docs", docs, done)
        while not done.wait(1.0):
            if self._stop_requests:
                raise RuntimeError("worker stopping")  # no checkpoint for an unhandled batch

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
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
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            self._drain_events()
            self._start_due_runs()
            self.journal.commit()
            self._flush_after_commit()
            self._release_held(clock.monotonic_s())
            self._update_status()
            self._write_metrics()   # metrics
            self._wait(watchdog_s, next_watchdog)

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

    # -- event handlers ------------------------------------------------------------

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
        entry.writing = False
        if kind == ACCEPTED:
            self._not_won(entry, write, *info)
            return
        if write.decides:
            self._set_problem("quorum", None)
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
            entry.latest = None
            if info is None:
                self._forget(doc_id, "deleted")
                return
            if tag.startswith("outcome:") and entry.outcome is not None:
                self._write_outcome(entry, info)   # put the outcome on the current version
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

    def _not_won(self, entry, write, rev, current, withdrawn):
        """A claim or confirmation that did not win (answered 202 on a cluster, or a
        confirmation beside a rival claim): we do not own the task, or not yet. The writer
        read it from a quorum and withdrew our leaf where a rival stands; decide again from
        what it read, and confirm before any run."""
        doc_id, tag = entry.id, write.tag
        log.info("task %s: our %s was not confirmed by a write quorum: not starting", doc_id, tag,
                 extra=about_doc(entry.doc, in_text=True))
        self._set_problem("quorum", "CouchDB takes writes on fewer copies than its write quorum: "
                                    "runs wait until a claim is confirmed")
        entry.latest = None   # a feed copy of our own leaf proves nothing
        if tag == "running" and entry.phase == "starting":
            self.runs.pop(entry.run_id, None)
            self.journal.add("written", entry.run_id)   # never started
            self._unstarted[entry.run_id] = None
            if len(self._unstarted) > FORGOTTEN_MAX:
                self._unstarted.pop(next(iter(self._unstarted)))
            entry.phase, entry.run_id = "new", None
        entry.confirm_first = True
        entry.not_before_s = clock.epoch_s() + QUORUM_RETRY_S
        if withdrawn:
            self._withdrawn[doc_id] = rev
            if len(self._withdrawn) > FORGOTTEN_MAX:
                self._withdrawn.pop(next(iter(self._withdrawn)))
        elif tag == "running":
            # Our `running` leaf stands, but no run began: take it back to a claim (else it
            # reads as a run of ours that died) and confirm again later.
            entry.doc = {**write.doc, "_rev": rev}
            entry.phase = "new"
            self._write(entry, {**{k: v for k, v in write.doc.items() if k != "running"},
                                "_rev": rev, "status": "scheduled"}, "claim")
            return
        if current is None:
            self._forget(doc_id, "deleted")
            return
        self._decide(current)

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
        if status in FINAL:
            self._forget(doc["_id"], status)
        elif status == "scheduled" and entry.phase in ("new", "finishing"):
            self._arm(entry)
        elif status == "paused":
            self.timers.disarm(entry.id)
            entry.phase = "held"

    def _ev_started(self, run_id, started_at_s):
        task_id = self.runs.get(run_id)
        entry = self.entries.get(task_id) if task_id else None
        # The zygote journaled the start itself, before the job could begin.
        if entry is not None and entry.run_id == run_id:
            if entry.phase == "starting" and not entry.confirm_first:
                self._hold(task_id, started_at_s, self._running_field(run_id, started_at_s))
            entry.phase = "running"
            replace_at = outcomes.replace_due(entry.doc, clock.now())   # overlap "replace"
            if replace_at is not None:
                self.timers.arm(task_id, replace_at.timestamp())

    def _ev_outcome(self, outcome):
        task_id = self.runs.pop(outcome.run_id, None)
        if task_id is not None:
            self._held.pop(task_id, None)   # over before its `running` write: the outcome says all
        entry = self.entries.get(task_id) if task_id else None
        if entry is None or entry.run_id != outcome.run_id:
            log.warning("outcome of run %s for a task we no longer hold: %s", outcome.run_id,
                        "ok" if outcome.ok else (outcome.error or {}).get("message"),
                        extra=about(outcome.task_id, run_id=outcome.run_id, in_text=True))
            if (outcome.error or {}).get("type") != "NotStarted":
                self._count_run(outcome)   # metrics: it ran all the same
            self.journal.add("written", outcome.run_id)
            return
        if not outcome.ok and (outcome.error or {}).get("type") == "NotStarted":
            # Shut down before its date: it never ran. Put it back to scheduled for whoever
            # comes next; the journal keeps only its intent, which says "never started".
            entry.phase, entry.run_id = "armed", None
            if not entry.writing:
                back = {k: v for k, v in entry.doc.items() if k != "running"}
                self._write(entry, {**back, "status": "scheduled"}, "unstart")
            return
        # A failed run is an error for the operator: `journalctl -u after@NAME JOB=<job> -p err`.
        logger = log.info if outcome.ok else log.error
        doc = entry.doc   # decoded once (Entry keeps it deflated)
        logger("job %s %s", doc.get("job", {}).get("name"),
               "done" if outcome.ok else f"failed: {(outcome.error or {}).get('message')}",
               extra=about_doc(doc, outcome.run_id))
        self._count_run(outcome, doc, entry.cancel)   # metrics
        entry.phase = "finishing"
        entry.outcome = self._outcome_fields(entry, outcome)
        self.journal.add("outcome", outcome.run_id, task=task_id, update=entry.outcome)
        if not entry.writing:
            self._after_commit.append(lambda: self._write_outcome(entry, entry.doc))

    def _ev_lease(self, until_s, why):
        if until_s is None:
            self._set_problem("lease", f"heartbeat failed: {why}")
            return
        self._set_problem("lease", None)
        self.metrics.couchdb_answered(clock.monotonic_s())   # metrics
        # Lapsed: a start found it gone, or it ran out before this renewal came back
        # (even if no task came due meanwhile to notice).
        lapsed = self._lease_lapsed or (self.lease_until_s is not None
                                        and clock.monotonic_s() >= self.lease_until_s)
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
        self.metrics.problem(source, bool(why), clock.monotonic_s())   # metrics
        if why:
            if had is None:
                log.warning("%s", why)
            self._problems[source] = why
        elif had is not None:
            del self._problems[source]
            log.info("%s: recovered", source)

    # -- decisions -----------------------------------------------------------------

    def _decide_all(self, docs):
        for doc in docs:
            self._decide(doc)

    def _decide(self, doc):
        """Given the current version of a document, do what its state asks of us (decide.py)."""
        doc_id = doc.get("_id", "")
        if doc_id.startswith(("_design/", claims.HEARTBEAT_PREFIX)):
            return
        entry = self.entries.get(doc_id)
        held = decide.Held(entry.doc.get("_rev"), entry.phase, entry.writing) if entry is not None else None
        action = decide.decide(doc, held, me=self.me.process, worker=self.name,
                               forgotten_gen=self._forgotten.get(doc_id, 0),
                               withdrawn_rev=self._withdrawn.get(doc_id))
        kind = action.kind
        if kind == decide.IGNORE:
            return
        if kind == decide.LATER:
            entry.latest = doc   # decide once our write is answered
            return
        if kind == decide.FORGET:
            self._forget(doc_id, action.why, cancel_run=action.cancel_run)
            return
        if kind == decide.REFUSE:
            self._refuse(doc, action.why)
            return
        if entry is None:
            entry = self.entries[doc_id] = Entry(doc=doc)
        else:
            entry.doc = doc
        if kind == decide.CANCEL_RUN:
            entry.cancel = True
            self.runner.cancel(entry.run_id)
        elif kind == decide.CANCEL:
            self._write(entry, {**doc, "status": "canceled", "owner": self.me.owner_field(),
                                "finished_at": format_date(clock.now())}, "canceled")
        elif kind in (decide.PAUSE, decide.HOLD):
            self._hold_paused(entry, write=kind == decide.PAUSE)
        elif kind == decide.CLAIM:
            self._claim(entry, reset_anchor=action.reset_anchor, run_now=action.run_now)
        elif kind == decide.ARM:
            self._arm(entry)
        elif kind == decide.RECOVER:
            self._recover_running(entry)

    def _task_or_refuse(self, doc):
        """The parsed task; or None, once the document is being ended as error."""
        try:
            return parse_task(doc)
        except TaskError as e:
            self._refuse(doc, e)
            return None

    def _claim(self, entry, reset_anchor, run_now=False):
        doc = entry.doc
        task = self._task_or_refuse(doc)
        if task is None:
            return
        # A paused task stays paused whoever holds it (a takeover must not resume it).
        status = "paused" if doc.get("status") in ("pause", "paused") else "scheduled"
        claimed = {**doc, "status": status, "owner": self.me.owner_field()}
        if run_now:
            # An extra run, due now: the field keeps the request across a crash, and the
            # run's own id (claims.run_id of this instant) keeps it apart from occurrences.
            claimed["run_now"] = format_date(clock.now())
        if reset_anchor or "anchor" not in doc:
            claimed["anchor"] = format_date(task.date)
            claimed["occurrence"] = 0
            # The first occurrence gets its jitter too (the anchor keeps the user's date);
            # without one, the user's date stays as the user wrote it.
            first = outcomes.jittered(task.date, task.id, 0, task.policy)
            if first != task.date:
                claimed["date"] = format_date(first)
        claimed.pop("running", None)
        entry.phase = "new"
        self._write(entry, claimed, "claim")

    def _hold_paused(self, entry, write: bool):
        """`pause`: disarm and say `paused`; `paused`: hold it, armed by nobody."""
        self.timers.disarm(entry.id)
        entry.phase = "held"
        if write:
            self._write(entry, {**entry.doc, "status": "paused", "owner": self.me.owner_field()}, "paused")

    def _refuse(self, doc, error):
        """A document no worker can use (it got past validation): end it as error, saying why."""
        log.warning("task %s is unusable: %s", doc.get("_id"), error, extra=about_doc(doc))
        entry = self.entries.get(doc["_id"]) or self.entries.setdefault(doc["_id"], Entry(doc=doc))
        entry.doc = doc
        self._write(entry, {**doc, "status": "error", "owner": self.me.owner_field(),
                            "error": {"type": "InvalidTask", "message": str(error), "traceback": None},
                            "finished_at": format_date(clock.now())}, "refused")

    def _arm(self, entry):
        doc = entry.doc
        task = self._task_or_refuse(doc)
        if task is None:
            return
        skip = outcomes.missed_fields(doc, clock.now())
        if skip is not None:
            # Occurrences it must not run (catchup "none", or older than catchup_window).
            log.info("task %s: skipping missed occurrences: next %s", entry.id, skip.get("date"),
                     extra=about_doc(doc, in_text=True))
            entry.phase = "new"
            self._write(entry, {**doc, **skip}, "catchup")
            return
        run, due = run_key(doc, task)
        if self._predecessor:   # only after a restart over a journal with open runs
            prior = self._predecessor.pop(run, None)
            if prior is not None and prior.state in ("started", "outcome"):
                self._settle_predecessor(entry, run, prior)
                return
        entry.phase = "armed"
        self.timers.arm(entry.id, max(due.timestamp(), entry.not_before_s))

    def _recover_running(self, entry):
        """Ours and `running`, but not in this process: our predecessor in this slot ran it."""
        run = (entry.doc.get("running") or {}).get("run")
        if run in self._unstarted:
            # Our own confirmation of a run that never began (not confirmed by a write
            # quorum), made the winner by a conflict's resolution: claim it again.
            self._claim(entry, reset_anchor=False)
            return
        prior = self._predecessor.pop(run, None) if run else None
        if prior is not None and prior.state == "intent":
            self._claim(entry, reset_anchor=False)   # journaled, never started: run it
            return
        self._settle_predecessor(entry, run, prior)

    def _settle_predecessor(self, entry, run, prior):
        if prior is not None and prior.outcome is None and prior.result is not None:
            # The job finished but the worker died before it heard: the child's own record.
            prior.outcome = self._outcome_fields(entry, outcomes.from_journal(run, prior.result, clock.epoch_s()))
        if prior is not None and prior.outcome is not None:
            entry.outcome = prior.outcome
            entry.phase = "finishing"
            self.journal.add("outcome", run, task=entry.doc["_id"], update=prior.outcome)
            self._after_commit.append(lambda: self._write_outcome(entry, entry.doc))
        else:
            known = f"journal: {prior.state}" if prior is not None else "no journal record"
            self._interrupted(entry, run, f"the worker process running it died ({known})")

    def _interrupted(self, entry, run, how):
        """A run whose fate is unknown: never run again unless the task allows retries."""
        doc = entry.doc
        attempts = int(doc.get("attempts", 0) or 0)
        retry = crash_retries(outcomes.policy_of(doc))   # `retry`: N, or an object retrying "interrupted"
        now = clock.now()
        self.metrics.run_ended("interrupted", job=about_doc(doc).get("job"))   # metrics
        if attempts < retry:
            log.warning("task %s: run %s interrupted (%s); retrying (%d of %d)", doc["_id"], run, how,
                        attempts + 1, retry, extra=about_doc(doc, run))
            update = {**doc, "status": "scheduled", "attempts": attempts + 1,
                      "owner": self.me.owner_field()}
            update.pop("running", None)
            entry.phase = "new"
            self._write(entry, update, "claim")
            return
        log.warning("task %s: run %s interrupted (%s); not run again", doc["_id"], run, how,
                    extra=about_doc(doc, run))
        entry.phase = "finishing"
        entry.outcome = self._outcome_fields(entry, outcomes.interrupted(run, how, now))
        self.journal.add("outcome", run or f"{doc['_id']}@unknown", task=doc["_id"], update=entry.outcome)
        self._after_commit.append(lambda: self._write_outcome(entry, entry.doc))

    def _take_over(self, beat, process, tasks, runs):
        """Tasks of a peer whose lease ended (or, on this host, that provably died)."""
        now = clock.now()
        for doc in tasks:
            if claims.owner_of(doc) != process or doc.get("worker") != self.name:
                continue
            try:
                status = normalize_status(doc.get("status"))
                date = parse_date(doc.get("date"))
            except TaskError as e:
                self._refuse(doc, e)
                continue
            run = (doc.get("running") or {}).get("run") or claims.run_id(
                doc["_id"], format_date(date), doc.get("attempts", 0))
            rec = (runs or {}).get(run)
            state = rec.state if rec is not None else None
            if runs is not None and rec is None:
                # Its journal is readable and never mentions this run: it never started,
                # unless the document says running (then the journal was lost).
                state = "started" if status == "running" else "intent"
            decision = claims.takeover(status, date, beat, state, now)
            entry = self.entries.get(doc["_id"]) or self.entries.setdefault(doc["_id"], Entry(doc=doc))
            if entry.writing:
                continue
            entry.doc = doc
            log.info("task %s: owner %s is gone; %s", doc["_id"], process, decision,
                     extra=about_doc(doc))
            if decision == claims.CLAIM:
                entry.confirm_first = True
                self._claim(entry, reset_anchor=status == "reschedule", run_now=status == "run")
            elif decision == claims.WRITE_OUTCOME:
                entry.taking_from = process
                self._settle_predecessor(entry, run, rec)
            elif decision == claims.INTERRUPTED:
                entry.taking_from = process
                self._interrupted(entry, run, f"its owner {process} vanished")

    # -- runs ----------------------------------------------------------------------

    def _lease_ok(self, at_s: float) -> bool:
        return self.lease_until_s is not None and clock.monotonic_s() + (at_s - clock.epoch_s()) < self.lease_until_s

    def _start_due_runs(self):
        now_s = clock.epoch_s()
        room = self._max_outstanding - len(self.runs)
        for task_id in self.timers.pop_due(now_s + FORK_AHEAD_S, limit=max(0, min(START_BATCH_MAX, room))):
            entry = self.entries.get(task_id)
            if entry is not None and entry.phase == "running":
                self.runner.cancel(entry.run_id)   # overlap "replace": its next occurrence is due
            if entry is None or entry.phase != "armed":
                continue
            if entry.writing:
                entry.latest = entry.latest or entry.doc  # start once the write is answered
                continue
            task = parse_task(entry.doc)
            at_s = max(run_key(entry.doc, task)[1].timestamp(), now_s)
            if not self._lease_ok(at_s):
                # We cannot know we still own it: do not start; resume when the lease is back.
                entry.phase = "paused"
                self._lease_lapsed = True
                self._set_problem("paused", "lease expired (CouchDB unreachable): not starting runs "
                                            "until ownership is confirmed")
                continue
            self._begin(entry, task, at_s)
        nxt = self.timers.next_deadline()
        if nxt is not None and nxt <= now_s and len(self.runs) >= self._max_outstanding:
            if self._backlog_since_s is None:
                self._backlog_since_s = now_s
        elif nxt is None or nxt > now_s:
            self._backlog_since_s = None

    def _begin(self, entry, task, at_s):
        run, due = run_key(entry.doc, task)
        entry.run_id, entry.phase, entry.cancel = run, "starting", False
        self.runs[run] = task.id
        entry.spec = RunSpec(run_id=run, task_id=task.id, job=task.job_name, at_epoch_s=at_s,
                             timeout_s=task.timeout_s or self.settings.default_timeout_s,
                             task={"id": task.id, "worker": task.worker, "date": format_date(task.date),
                                   "arguments": task.arguments, "doc": entry.doc},
                             queued_since_s=self._queued_since(due.timestamp()))
        self.journal.add("intent", run, task=task.id, date=format_date(task.date))
        if entry.confirm_first:
            # After a lapse or a takeover: start only once CouchDB confirms we still own it.
            running = {**entry.doc, "status": "running", "running": self._running_field(run, at_s)}
            self._after_commit.append(lambda: self._write(entry, running, "running"))
        else:
            # `running` is written once the run has started and outlived RUNNING_WRITE_HOLD_S.
            self._after_commit.append(lambda: self._submit(entry))

    def _queued_since(self, date_s: float) -> float | None:
        """Since when a run begun now waited for room (None: it did not)."""
        if self._backlog_since_s is None or date_s > clock.epoch_s():
            return None
        return max(date_s, self._backlog_since_s)

    def _running_field(self, run, at_s) -> dict:
        return {"run": run, "process": self.me.process, "since": format_date(_utc(max(at_s, clock.epoch_s())))}

    def _submit(self, entry):
        self.runner.submit(entry.spec)

    def _hold(self, task_id, started_at_s, running_field):
        """Write `running` RUNNING_WRITE_HOLD_S after the run started (its child waits for
        started_at_s, at most a few milliseconds ahead)."""
        starts_in_s = max(0.0, started_at_s - clock.epoch_s())
        self._held[task_id] = (clock.monotonic_s() + starts_in_s + RUNNING_WRITE_HOLD_S, running_field)

    def _release_held(self, now_m):
        """Write `running` for the runs that outlived RUNNING_WRITE_HOLD_S (oldest first)."""
        while self._held:
            task_id, (due_m, field) = next(iter(self._held.items()))
            if due_m > now_m:
                return
            del self._held[task_id]
            entry = self.entries.get(task_id)
            if (entry is None or entry.run_id != field["run"] or entry.writing
                    or entry.phase not in ("starting", "running")):
                continue
            doc = entry.doc
            if doc.get("status") == "scheduled":   # not if the user wrote cancel meanwhile
                self._write(entry, {**doc, "status": "running", "running": field}, "running")

    def _outcome_fields(self, entry, outcome) -> dict:
        """The document's fields after this run (afterd/outcome.py)."""
        fields, warning = outcomes.outcome_fields(entry.doc, outcome, now=clock.now(), canceled=entry.cancel,
                                                  process=self.me.process, history_limit=self.settings.history_limit,
                                                  output_limit=self.settings.output_limit)
        if warning:
            log.warning("task %s: %s", entry.id, warning, extra=about_doc(entry.doc, entry.run_id, in_text=True))
        return fields

    def _write_outcome(self, entry, base):
        """Put the pending outcome onto `base` (the current version) and write it."""
        if claims.owner_of(base) not in (None, self.me.process, entry.taking_from):
            update = entry.outcome
            log.warning("task %s was taken over by %s while its run finished; outcome not written: %s",
                        base["_id"], claims.owner_of(base), update.get("error") or update.get("result"),
                        extra=about_doc(base, entry.run_id, in_text=True))
            self._forget(base["_id"], "taken over")
            return
        doc = outcomes.apply_outcome(base, entry.outcome, self.me.owner_field())
        entry.phase = "finishing"
        run = entry.run_id or (base.get("running") or {}).get("run") or ""
        follow = outcomes.follow_up(base, entry.outcome, run, clock.now())
        if follow is not None:
            # Queued before the outcome, so an outcome that is written (and journaled as
            # such) never leaves its follow-up behind; a replay writes it again: 409.
            self.writer.submit(Write(doc=follow, tag="follow-up"))
        self._write(entry, doc, f"outcome:{run}")

    def _write(self, entry, doc, tag):
        log.debug("write %s %s (%s) based on %s", doc["_id"], doc.get("status"), tag, doc.get("_rev"),
                  extra=about_doc(doc, entry.run_id, in_text=True))
        entry.writing = True
        decides = CLAIM if tag == "claim" else CONFIRM if tag == "running" and entry.confirm_first else None
        self.writer.submit(Write(doc=doc, tag=tag, decides=decides))

    def _forget(self, doc_id, why, cancel_run=False):
        entry = self.entries.pop(doc_id, None)
        self._held.pop(doc_id, None)
        if entry is not None:
            # Remember its last version a while, so a late echo of an older one is ignored.
            self._forgotten[doc_id] = decide.rev_gen(entry.doc.get("_rev"))
            if len(self._forgotten) > FORGOTTEN_MAX:
                self._forgotten.pop(next(iter(self._forgotten)))
        self.timers.disarm(doc_id)
        if entry is not None and cancel_run and entry.run_id and entry.phase in ("starting", "running"):
            log.info("task %s %s: stopping its run", doc_id, why,
                     extra=about_doc(entry.doc, entry.run_id, in_text=True))
            self.runner.cancel(entry.run_id)

    # -- reload, status, shutdown ----------------------------------------------------

    def _reload(self):
        self.notifier.reloading()
        self.runner.reload()   # logs and counts the reload itself
        self.notifier.ready()

    # -- metrics (afterd/metrics.py) -------------------------------------------------------

    def _count_run(self, outcome, doc=None, canceled=False):
        """A run ended: count it by outcome, its duration and how late it started."""
        error_type = (outcome.error or {}).get("type")
        started = outcome.started_at_s is not None
        self.metrics.run_ended(outcome_kind(outcome.ok, error_type, canceled),
                               duration_s=outcome.finished_at_s - outcome.started_at_s if started else None,
                               lateness_s=outcome.queued_ms / 1000 if started else None,
                               job=about_doc(doc).get("job") if doc else None, error_type=error_type)

    def _write_metrics(self, force=False):
        """Every metrics.WRITE_EVERY_S (and at stop): the gauges of this instant, then the file."""
        now_m = clock.monotonic_s()
        if not force and not self.metrics.due(now_m):
            return
        self.metrics.set_state(now_s=clock.epoch_s(), now_m=now_m, scheduled=len(self.timers),
                               running=self.runner.running(), held=len(self.entries),
                               next_due_s=self.timers.next_deadline(), lease_until_m=self.lease_until_s,
                               journal_pending=self.journal.pending_writes)
        self.metrics.write(now_m)

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
        self.metrics.up = 0   # metrics: the last file says the worker stopped cleanly
        self._write_metrics(force=True)
        self.journal.close()
        log.info("worker %s stopped", self.name)
        return EXIT_SOFTWARE if getattr(self, "_fatal", False) else EXIT_OK

    def _drain_until_quiet(self):
        while self._events:
            self._drain_events()
            self.journal.commit()
            self._flush_after_commit()

    def _on_second_signal(self, signum, frame):
        self._stop_requests += 1
        os.kill(os.getpid(), signal.SIGKILL) if self._stop_requests > 2 else None


def run_key(doc: dict, task):
    """(run id, due datetime) of the run a task's document asks for next: its occurrence,
    or an extra run requested with `status: run` (`run_now`)."""
    attempts = doc.get("attempts", 0)
    extra = doc.get("run_now")
    if isinstance(extra, str):
        try:
            at = parse_date(extra)
            return claims.run_id(task.id, "now:" + format_date(at), attempts), min(at, task.date)
        except TaskError:
            pass
    return claims.run_id(task.id, format_date(task.date), attempts), task.date


def claim_race_grace(quorum: dict) -> float:
    """How long the feed leaves rival claims for their 202 losers to withdraw (feed.py).

    On a cluster (n > 1 copies) a claim wins only when a write quorum took it, and with
    w a majority of n two rival claims cannot both win: the losers withdraw, and the
    feed must not settle the race first. Elsewhere (one node, or servers replicating to
    each other) every claim was answered 201 and nothing will be withdrawn: the feed
    settles rival claims at once by the ordinary rule (docs/guarantees.md).
    """
    n, w = quorum.get("n", 1), quorum.get("w")
    if n <= 1:
        return 0.0
    if w is not None and 2 * w <= n:
        log.warning("the database keeps n=%d copies with a write quorum w=%d, not a majority: two rival "
                    "claims can both be answered 201, and a task may run twice (docs/guarantees.md)", n, w)
    log.info("CouchDB cluster: n=%d copies, w=%s, r=%s: a claim counts only when a write quorum took it",
             n, w, quorum.get("r"))
    return CLAIM_RACE_GRACE_S


def _utc(epoch_s):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch_s, timezone.utc)


def _test_hang_at():
    """AFTER_TEST_HANG_AFTER_S: make the main loop hang, so tests can see systemd's watchdog act."""
    value = os.environ.get("AFTER_TEST_HANG_AFTER_S")
    return clock.monotonic_s() + float(value) if value else None


def run_worker(name: str, settings) -> int:
    """`after start NAME` in the foreground: the exit code."""
    setup_logging(settings.log_level, fields={"WORKER": name})   # journal field on every line
    worker = Worker(name, settings)
    try:
        worker.connect()
    except Unauthorized as e:
        log.error("%s", e)
        return EXIT_NOPERM
    except CouchError as e:
        log.error("%s", e)
        return EXIT_UNAVAILABLE
    try:
        worker.start()
    except BlockingIOError:
        log.error("state directory %s is locked by another process", worker.state_dir)
        return EXIT_SOFTWARE
    except (Unavailable, CouchError) as e:
        log.error("%s", e)
        return EXIT_UNAVAILABLE
    return worker.run()
