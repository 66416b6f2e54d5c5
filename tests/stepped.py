"""Worker processes on an in-memory store, stepped through time instead of waiting for it.

Each `Process` is a real Worker (the loop, decisions, journal, heartbeat and writer
logic of production) whose threads are replaced by steps: the heartbeat's `beat()`,
the writer's `send()`, a pull of the store's change feed, and `Worker.turn(now)`, all
driven by a `SteppedClock`. Only the runner is stood in for (`StepRunner`): a run
"takes" `run_s` of stepped time and records when it started, so a test can assert
exactly-once. A minute of leases, outages and takeovers takes well under a second.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

from afterd import service
from afterd.claims import Identity
from afterd.config import Settings
from afterd.couch import Unavailable
from afterd.feed import batch_docs, worker_selector
from afterd.fences import Fences
from afterd.journal import open_slot
from afterd.lease import Heartbeat
from afterd.runner import RunOutcome
from afterd.store import MemoryStore
from afterd.worker import Worker
from afterd.writer import Writer

STEP_S = 0.05
_pids = itertools.count(1000)


class SteppedClock:
    """afterd.clock's three readings, moved only by advance()."""

    def __init__(self, start: datetime):
        self.t = start.timestamp()
        self.m = 10_000.0

    def epoch_s(self) -> float:
        return self.t

    def monotonic_s(self) -> float:
        return self.m

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, timezone.utc)

    def advance(self, seconds: float):
        self.t += seconds
        self.m += seconds


class Outage:
    """The store, or an outage of it: while `down`, every call fails as an unreachable
    CouchDB does (Unavailable), before touching anything."""

    def __init__(self, store: MemoryStore):
        self.store = store
        self.down = False

    def clone(self):
        return self

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise Unavailable("CouchDB unreachable (a stepped outage)")
            return attr(*args, **kwargs)
        return call


class StepRunner:
    """The runner's part without processes: each run starts at its date (or at once if
    late) and ends ok `run_s` later, unless canceled. `starts` counts starts per run id."""

    def __init__(self, post, run_s: float):
        self.post, self.run_s = post, run_s
        self.pending: dict[str, tuple] = {}    # run id -> (spec, started at or None)
        self.starts: Counter = Counter()
        self.started_at: dict[str, float] = {}
        self.canceled: set[str] = set()

    def submit(self, spec):
        self.pending[spec.run_id] = (spec, None)

    def cancel(self, run_id: str):
        self.canceled.add(run_id)

    def running(self) -> int:
        return sum(1 for _, started in self.pending.values() if started is not None)

    def step(self, now_s: float):
        for run_id, (spec, started) in list(self.pending.items()):
            if started is None and now_s >= spec.at_epoch_s:
                started = max(spec.at_epoch_s, now_s - STEP_S)
                self.pending[run_id] = (spec, started)
                self.starts[run_id] += 1
                self.started_at[run_id] = started
                self.post("started", run_id, started)
            if started is not None and (now_s >= started + self.run_s or run_id in self.canceled):
                del self.pending[run_id]
                canceled = run_id in self.canceled
                error = {"type": "Canceled", "message": "canceled", "traceback": None} if canceled else None
                self.post("outcome", RunOutcome(run_id, spec.task_id, not canceled, None, error,
                                                started, now_s, 0.0))

    def reload(self):
        pass


class Process:
    """One process of a worker on the shared store, stepped by its Cluster."""

    def __init__(self, cluster: "Cluster", name: str, host: str, run_s: float):
        self.cluster, self.alive = cluster, True
        store, clock = cluster.store, cluster.clock
        settings = Settings(state_dir=cluster.state_dir / host, host=host, lease_s=cluster.lease_s,
                            skew_margin_s=cluster.skew_margin_s, metrics_dir=None)
        self.worker = w = Worker(name, settings)
        slot, journal, predecessor = open_slot(w.state_dir)
        self.me = Identity(name, host, slot, next(_pids))
        self.runner = StepRunner(w._post, run_s)
        self.heartbeat = Heartbeat(store, self.me, lease_s=settings.lease_s,
                                   skew_margin_s=settings.skew_margin_s, state_dir=w.state_dir,
                                   on_lease=lambda until, why: w._post("lease", until, why),
                                   on_peer=lambda *a: w._post("peer", *a), clock=clock)
        self.writer = Writer(store, on_result=lambda kind, wr, info: w._post("write", kind, wr, info),
                             on_state=lambda ok, why: w._post("problem", "writer", None if ok else why))
        self.fences = Fences(store, self.me, on_verdict=lambda *a: w._post("fence", *a),
                             on_state=lambda ok, why: w._post("problem", "fences", None if ok else why),
                             clock=clock)
        w.attach(self.me, journal, predecessor, runner=self.runner, heartbeat=self.heartbeat,
                 writer=self.writer, feed=None, fences=self.fences)
        self.since = store.update_seq()
        w.lease_until_s = self.heartbeat.renew()
        self.next_beat_m = clock.m + self.heartbeat.lease_s / 4
        service.load(w, store, clock.t, clock.m)

    def step(self):
        if not self.alive:
            return
        clock, store = self.cluster.clock, self.cluster.store
        if clock.m >= self.next_beat_m or self.heartbeat._wake.is_set():   # scan_soon() wakes it
            self.heartbeat._wake.clear()
            self.next_beat_m = clock.m + self.heartbeat.beat()
        if not store.down:
            results, self.since = store.changes(self.since, selector=worker_selector(
                self.worker.name, self.me.process), deadline_s=0)
            if results:
                self.worker._post("docs", batch_docs(results), threading.Event())
        batch = self.writer.take()
        if batch:
            self.writer.send(batch)   # in an outage it stays queued, as the writer thread keeps it
        while self.fences.step():
            pass
        self.runner.step(clock.t)
        self.worker.turn(clock.t, clock.m)

    def kill(self):
        """kill -9: nothing more happens in this process; its journal stays as it was."""
        self.alive = False


class Cluster:
    """A store, a clock, and the processes stepped together on them."""

    def __init__(self, tmp_path, *, start: datetime | None = None, lease_s=60.0, skew_margin_s=5.0):
        self.clock = SteppedClock(start or datetime(2030, 1, 1, tzinfo=timezone.utc))
        self.store = Outage(MemoryStore("tasks"))
        self.store.ensure_database()
        self.state_dir = tmp_path
        self.lease_s, self.skew_margin_s = lease_s, skew_margin_s
        self.processes: list[Process] = []

    def process(self, name="manobi", host="host-a", run_s=0.2) -> Process:
        p = Process(self, name, host, run_s)
        self.processes.append(p)
        return p

    def at(self, seconds: float) -> datetime:
        """The instant `seconds` after the clock's now."""
        return self.clock.now() + timedelta(seconds=seconds)

    def post(self, doc: dict) -> str:
        doc_id, _ = self.store.store.post(doc)
        return doc_id

    def run_for(self, seconds: float, until=None):
        """Step every process through `seconds` of time (or until `until()` holds)."""
        end = self.clock.t + seconds
        while self.clock.t < end:
            self.clock.advance(STEP_S)
            for p in self.processes:
                p.step()
            if until is not None and until():
                return True
        return until is None

    def doc(self, doc_id: str) -> dict:
        return self.store.store.get(doc_id)

    def starts(self) -> Counter:
        """Starts per run id, over every process."""
        total = Counter()
        for p in self.processes:
            total.update(p.runner.starts)
        return total

    def started_at(self) -> dict[str, float]:
        return {run: t for p in self.processes for run, t in p.runner.started_at.items()}
