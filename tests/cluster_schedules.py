"""Randomized schedules of real worker processes on the cluster model (tests/cluster_model.py).

`run_schedule(seed)` builds a 3-node cluster, two or three processes of one worker (each
talking to its own node), a few tasks, and lets `random.Random(seed)` choose every step:
which pending request goes next, a loop turn, the clock moving, a replication step, a
late write landing, a node going down or slow or coming back, a user's cancel,
reschedule or pause. Then everything is brought to quiet (all nodes up, replication
drained, the clock moved past the bound) and the invariants are checked
(`check`). The result carries the failures and the trace of the last steps.

Each process is a real Worker (tests/stepped.py's parts: loop, Heartbeat, Writer,
StepRunner). Each component's operation (a heartbeat's beat, a writer's send, one feed
request and the resolution of what it brought) runs in a thread of its own, but never
at the same time as anything else: every Store call hands the request to the
scheduler and waits until the schedule grants it, so the requests of different
processes interleave one by one, in the seed's order, and a run replays exactly.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from afterd import clock as afterd_clock
from afterd import service
from afterd.claims import HEARTBEAT_PREFIX, Identity
from afterd.config import Settings
from afterd.couch import CouchError
from afterd.feed import BATCH_LIMIT, Feed, batch_docs, worker_selector
from afterd.fields import format_date, parse_date
from afterd.journal import open_slot
from afterd.journal_records import encode, start_record
from afterd.lease import Heartbeat
from afterd.worker import Worker
from afterd.writer import Writer

from afterd import fences as fences_mod

from greenlet import getcurrent, greenlet

from cluster_model import Cluster
from stepped import SteppedClock, StepRunner

WORKER = "manobi"
LEASE_S, SKEW_S = 6.0, 1.0
# Peers look for ended leases every lease_s / 2, and a look whose one-copy _find is
# behind misses the tasks: two looks, and a second for the requests; and a fence left
# undecided while a node was away is asked again at most RETRY_CAP_S after it is back.
MARGIN_S = LEASE_S + 1.0 + 2.0
BOUND_S = LEASE_S + SKEW_S + MARGIN_S   # a due task starts within this of its date (or of a node's return)
HORIZON_S = 25.0
START = datetime(2030, 1, 1, tzinfo=timezone.utc)


class NoWait(threading.Condition):
    """The writer's condition, minus its waits: a retry is simply the next request."""

    def wait(self, timeout=None):
        return False


class Op:
    """One operation of a component, stepped request by request: a greenlet that switches
    back to the scheduler at each Store call and is resumed when the schedule grants it."""

    def __init__(self, sim, proc, label, fn, done):
        self.sim, self.proc, self.label, self.fn, self.done = sim, proc, label, fn, done
        self.request = None          # (name, args, kwargs) waiting for a grant
        self.finished = False
        self.result = self.error = None
        self.glet = greenlet(self._run)
        sim.ops_by_glet[self.glet] = self
        self.glet.switch()           # until its first request, or its end

    def _run(self):
        try:
            self.result = self.fn()
        except BaseException as e:   # handed to the scheduler, which fails the schedule
            self.error = e
        self.finished = True
        del self.sim.ops_by_glet[self.glet]

    def call(self, name, args, kwargs):
        self.request = (name, args, kwargs)
        ret, exc = self.glet.parent.switch()
        self.request = None
        if exc is not None:
            raise exc
        return ret

    def grant(self):
        """Serve the waiting request (on the model, atomically), let the op go on to its next."""
        name, args, kwargs = self.request
        try:
            ret, exc = getattr(self.proc.node, name)(*args, **kwargs), None
        except Exception as e:
            ret, exc = None, e
        if not (name == "changes" and ret and not ret[0]):   # an empty feed answer says nothing
            self.sim.log(f"{self.proc.name} {self.label}: {describe(name, args, ret, exc)}")
        self.glet.switch((ret, exc))


class Gate:
    """The store a process's components hold: inside an op, each call is a request that
    waits for the schedule; outside one (start-up), a plain call."""

    def __init__(self, sim, proc):
        self.sim, self.proc = sim, proc
        self.database, self.safe_url = "tasks", f"model:node{proc.node.index}"

    def clone(self):
        return self

    def __getattr__(self, name):
        target = getattr(self.proc.node, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            op = self.sim.ops_by_glet.get(getcurrent())
            if op is None:
                return target(*args, **kwargs)
            return op.call(name, args, kwargs)
        return call


class Runner(StepRunner):
    """StepRunner, with every start also in the schedule's log of starts, and journaled as
    the run's child journals it before the job begins (afterd/child.py: a `start` line
    appended to the process's journal), so a restart on the same host knows it began."""

    def __init__(self, sim, proc, post, run_s):
        super().__init__(self._post, run_s)
        self.sim, self.proc, self._real_post = sim, proc, post

    def _post(self, kind, *args):
        if kind == "started":
            run_id, at = args
            with open(self.proc.worker.journal.path, "ab") as f:
                f.write(encode(start_record(run_id, at)))
            self.sim.starts.append((run_id, at, self.proc.name))
            self.sim.log(f"{self.proc.name} START {short(run_id)} at {at - self.sim.t0:.2f}")
        self._real_post(kind, *args)


class Proc:
    """One process of the worker, talking to node `index`."""

    def __init__(self, sim, name: str, index: int):
        self.sim, self.name, self.alive, self.restarted = sim, name, True, False
        self.node = sim.cluster.node(index)
        self.store = Gate(sim, self)
        host = f"host-{name}"
        settings = Settings(state_dir=sim.dir / host, host=host, lease_s=LEASE_S, skew_margin_s=SKEW_S,
                            metrics_dir=None)
        self.worker = w = Worker(WORKER, settings)
        slot, journal, predecessor = open_slot(w.state_dir)
        try:
            self._start(sim, w, slot, journal, predecessor, index, host)
        except BaseException:
            journal.close(remove_if_clean=False)   # a start that fails exits, and its lock goes
            raise

    def _start(self, sim, w, slot, journal, predecessor, index, host):
        # The same pid in every life, as PID 1 in a container: its start tells its lives apart.
        self.me = Identity(WORKER, host, slot, 1000 + index, started=format_date(sim.clock.now()))
        self.runner = Runner(sim, self, w._post, run_s=sim.rng.choice([0.1, 0.3, 1.0]))
        self.heartbeat = Heartbeat(self.store, self.me, lease_s=LEASE_S, skew_margin_s=SKEW_S,
                                   state_dir=w.state_dir,
                                   on_lease=lambda until, why: w._post("lease", until, why),
                                   on_peer=lambda *a: w._post("peer", *a), clock=sim.clock)
        self.writer = Writer(self.store, on_result=lambda kind, wr, info: w._post("write", kind, wr, info),
                             on_state=lambda ok, why: w._post("problem", "writer", None if ok else why))
        self.writer._cond = NoWait()
        w.cluster = service.is_cluster(self.node.quorum())
        self.fences = fences_mod.Fences(self.store, self.me, on_verdict=lambda *a: w._post("fence", *a),
                                        on_state=lambda ok, why: w._post("problem", "fences",
                                                                         None if ok else why),
                                        clock=sim.clock)
        self.feed = Feed(self.store, WORKER, f"after-feed-{self.me.process}", on_batch=None,
                         on_state=lambda state, why: w._post("feed", state, why),
                         owner_process=self.me.process)
        w.attach(self.me, journal, predecessor, runner=self.runner, heartbeat=self.heartbeat,
                 writer=self.writer, feed=self.feed, fences=self.fences)
        self.since = self.node.update_seq()
        w.lease_until_s = self.heartbeat.renew()
        self.next_beat_m = sim.clock.m + LEASE_S / 4
        self.next_feed_m = sim.clock.m
        self.next_send_m = sim.clock.m
        service.load(w, self.store, sim.clock.t, sim.clock.m)
        self.ops: dict[str, Op | None] = {"beat": None, "send": None, "feed": None, "fence": None}

    # -- what each component does in one operation ---------------------------------------

    def feed_step(self):
        """One pass of Feed._follow: one _changes request, the resolution of conflicted
        tasks, the batch handed to the loop (afterd/feed.py)."""
        f = self.feed
        results, last_seq = f.couch.changes(self.since, selector=worker_selector(WORKER, self.me.process),
                                            limit=BATCH_LIMIT, deadline_s=0, conflicts=True, style="all_docs")
        docs = f._resolve_all(batch_docs(results))
        if docs:
            self.worker._post("docs", docs, threading.Event())
        self.since = last_seq

    def start_ops(self):
        """Start each idle component that has something to do now."""
        if not self.alive:
            return
        clk = self.sim.clock
        if self.ops["beat"] is None and (clk.m >= self.next_beat_m or self.heartbeat._wake.is_set()):
            self.heartbeat._wake.clear()
            self.ops["beat"] = Op(self.sim, self, "beat", self.heartbeat.beat, self._beat_done)
        if self.ops["send"] is None and clk.m >= self.next_send_m and self.writer._queue:
            batch = self.writer.take()
            if batch:
                self.ops["send"] = Op(self.sim, self, "send", lambda: self.writer.send(batch), self._send_done)
            else:
                self.writer._inflight = 0
        if self.fences is not None and self.ops["fence"] is None and self.fences._queue and self.fences._due():
            self.ops["fence"] = Op(self.sim, self, "fence", self.fences.step, lambda op: None)
        if self.ops["feed"] is None and clk.m >= self.next_feed_m:
            self.ops["feed"] = Op(self.sim, self, "feed", self.feed_step, self._feed_done)

    def _beat_done(self, op):
        self.next_beat_m = self.sim.clock.m + (op.result if op.error is None else 1.0)

    def _send_done(self, op):
        if op.error is None and op.result is False:
            self.next_send_m = self.sim.clock.m + 0.5   # the writer's backoff, shortened

    def _feed_done(self, op):
        if op.error is not None and isinstance(op.error, (CouchError, LookupError, TypeError, ValueError)):
            op.error = None
            self.next_feed_m = self.sim.clock.m + 1.0   # Feed._pause, shortened; same since
        else:
            self.next_feed_m = self.sim.clock.m + 0.1

    def turn(self):
        clk = self.sim.clock
        self.runner.step(clk.t)
        self.worker.turn(clk.t, clk.m)


class Sim:
    def __init__(self, seed: int, directory: Path, *, procs: int | None = None):
        self.seed = seed
        self.rng = rng = random.Random(seed)
        self.dir = directory
        self.clock = SteppedClock(START)
        self.t0 = self.clock.t
        afterd_clock.epoch_s, afterd_clock.monotonic_s = self.clock.epoch_s, self.clock.monotonic_s
        self.cluster = Cluster(random.Random(rng.getrandbits(64)))
        self.ops_by_glet: dict = {}
        self.trace: list[str] = []
        self.step_no = 0
        self.starts: list[tuple[str, float, str]] = []
        self.user = self.cluster.node(0)
        self.tasks: dict[str, dict] = {}     # id -> what the harness expects of it
        self.ups: list[float] = [self.t0]
        self.partitioned = False             # a process was cut off (its node down) at some point
        self.killed = False                  # a process was killed at some point    # when a node came back (latency is measured from then)
        n_procs = procs or rng.choice([2, 3])
        self.post_tasks(rng.randint(4, 9))
        self.procs = [Proc(self, "abc"[i], i) for i in range(n_procs)]

    def log(self, line: str):
        self.trace.append(f"{self.step_no:5d} {self.clock.t - self.t0:6.2f} {line}")

    def post_tasks(self, count: int):
        for k in range(count):
            kind = self.rng.choice(["once", "once", "overdue", "repeat"])
            due = {"once": self.rng.uniform(0.5, HORIZON_S * 0.8), "overdue": -self.rng.uniform(1, 20),
                   "repeat": self.rng.uniform(0.5, 5)}[kind]
            doc = {"_id": f"t{k}", "worker": WORKER, "status": "waiting",
                   "date": format_date(START + timedelta(seconds=round(due, 2))),
                   "job": {"name": "hello", "arguments": []}}
            if kind == "repeat":
                doc["repeat"] = {"seconds": self.rng.choice([3, 5, 8])}
            self.cluster.node(self.rng.randrange(3)).put(doc)
            self.tasks[doc["_id"]] = {"kind": kind, "user": [], "answered": None}

    # -- the schedule ------------------------------------------------------------------------

    def ops(self) -> list[Op]:
        return [op for p in self.procs for op in p.ops.values() if op is not None]

    def reap(self):
        for p in self.procs:
            for key, op in p.ops.items():
                if op is not None and op.finished:
                    p.ops[key] = None
                    op.done(op)
                    if op.error is not None:
                        raise op.error

    def step(self, quiet: bool = False):
        self.step_no += 1
        rng, cl = self.rng, self.cluster
        for p in self.procs:
            p.start_ops()
        waiting = [op for op in self.ops() if op.request is not None]
        choices = [("grant", 8 if waiting else 0), ("turn", 3), ("tick", 2),
                   ("replicate", 3 if quiet else 1.5), ("late", 1 if cl.late else 0)]
        if not quiet:
            choices += [("fault", 0.08), ("user", 0.05)]
        kind = rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        if quiet and rng.random() < 0.05:
            for p in [p for p in self.procs if not p.alive and not p.restarted]:
                self.restart(p)
        if kind == "grant":
            rng.choice(waiting).grant()
        elif kind == "turn":
            p = rng.choice(self.procs)
            if p.alive:
                p.turn()
        elif kind == "tick":
            self.clock.advance(rng.choice([0.02, 0.05, 0.1, 0.2, 0.5]))
            for p in self.procs:     # a loop wakes at least on each tick (its select's timeout)
                if p.alive:
                    p.turn()
        elif kind == "replicate":
            if cl.replicate_one():
                self.log("replicate")
        elif kind == "late":
            k = rng.randrange(len(cl.late))
            i, doc_id, _ = cl.late[k]
            cl.apply_late(k)
            self.log(f"late write of {doc_id} lands on copy {i}")
        elif kind == "fault":
            self.fault()
        elif kind == "user":
            self.user_action()
        self.reap()

    def fault(self):
        rng, cl = self.rng, self.cluster
        what = rng.choice(["down", "slow", "lose", "heal", "kill"])
        dead = [p for p in self.procs if not p.alive and not p.restarted and p.node.index not in self.cluster.down]
        if dead and rng.random() < 0.5:
            self.restart(dead[0])
            return
        if what == "kill":
            alive = [p for p in self.procs if p.alive]
            if not self.killed and len(alive) > 1:
                self.kill(rng.choice(alive))
            return
        if what == "down" and not cl.down:
            i = rng.randrange(cl.n)
            cl.down.add(i)
            self.partitioned = True
            self.log(f"FAULT node {i} down")
        elif what == "slow" and len(cl.slow) < 1:
            i = rng.randrange(cl.n)
            cl.slow.add(i)
            self.log(f"FAULT node {i} slow")
        elif what == "lose":
            cl.lose_answer = rng.choice([0.0, 0.05, 0.2])
            self.log(f"FAULT answers lost {cl.lose_answer:.0%}")
        else:
            self.heal()

    def heal_all(self):
        self.heal()
        for p in [p for p in self.procs if not p.alive and not p.restarted]:
            self.restart(p)

    def kill(self, p):
        """kill -9: its loop, threads and runs stop where they are; the journal keeps only
        what it committed (the open file goes as the process's would, with its lock)."""
        p.alive, p.restarted = False, False
        p.ops = {k: None for k in p.ops}
        os.close(p.worker.journal._fd)
        p.worker.journal._fd = None
        self.killed = True
        self.ups.append(self.clock.t)
        self.log(f"KILL process {p.name} ({p.me.process})")

    def restart(self, p):
        """The same worker started again on the same host: its slot, its predecessor's journal."""
        try:
            again = Proc(self, p.name, p.node.index)
        except CouchError as e:
            self.log(f"RESTART process {p.name} failed: {e}")   # systemd starts it again later
            return
        p.restarted = True
        self.procs.append(again)
        self.ups.append(self.clock.t)
        self.log(f"RESTART process {p.name} ({again.me.process})")

    def heal(self):
        cl = self.cluster
        if cl.down or cl.slow or cl.lose_answer:
            self.log(f"heal: nodes {sorted(cl.down)} up, {sorted(cl.slow)} fast, no answer lost")
            if cl.down:
                self.ups.append(self.clock.t)
            cl.down.clear()
            cl.slow.clear()
            cl.lose_answer = 0.0

    def user_action(self):
        """A user's GET then PUT through some node (one step: the two requests back to back)."""
        rng = self.rng
        task_id = rng.choice(sorted(self.tasks))
        node = self.cluster.node(rng.randrange(3))
        what = rng.choice(["cancel", "reschedule", "pause"])
        # Recorded whatever the answer: a write answered 409 or lost may still land (a
        # slow copy applies it later).
        self.tasks[task_id]["user"].append(what)
        try:
            doc = node.get(task_id)
            if doc.get("status") in ("done", "error", "canceled"):
                self.tasks[task_id]["user"].pop()
                return   # a user acts on a task that is still to run
            new = {**doc, "status": what}
            due = None
            if what == "reschedule":
                due = self.clock.t - self.t0 + rng.uniform(-2, 8)
                # On the odd millisecond: never an occurrence's date (those are on a 10 ms
                # grid), so a run id names one occurrence only (a reschedule to the very
                # date of a run is a new run the user asked for, with the same id).
                new["date"] = format_date(START + timedelta(seconds=round(due, 2) + 0.001))
            node.put(new)
            self.tasks[task_id]["answered"] = what
            self.log(f"USER {what} {task_id} via node {node.index}: ok")
        except CouchError as e:
            self.tasks[task_id]["answered"] = None   # unknown: it may land, or not
            self.log(f"USER {what} {task_id} via node {node.index}: {type(e).__name__}")

    def run(self):
        end = self.t0 + HORIZON_S
        while self.clock.t < end:
            self.step()
        self.quiet()

    def idle(self) -> bool:
        """No request, run, event or write in flight anywhere (a moment to check at)."""
        return not self.ops() and all(not p.runner.pending and not p.worker._events and not p.writer.pending()
                                      and not (p.fences and p.fences.pending()) for p in self.procs if p.alive)

    def quiet(self):
        """All nodes up (and a killed process started again), then on until the clock is past
        the bound and nothing is in flight; replication drained."""
        self.heal_all()
        self.log("QUIET")
        end = self.clock.t + BOUND_S + 2 * LEASE_S
        while self.clock.t < end or not self.idle():
            self.step(quiet=True)
            if self.step_no > 400_000:
                raise AssertionError("the schedule did not come to quiet")
        self.cluster.drain()
        self.quiet_at = self.clock.t


def describe(name, args, ret, exc) -> str:
    if name == "bulk":
        docs = args[0]
        out = []
        for d, r in zip(docs, ret or [{}] * len(docs)):
            res = "?" if exc else ("202" if r.get("accepted") else r.get("error") or "201")
            out.append(f"{short_id(d['_id'])}{'(del)' if d.get('_deleted') else ':' + str(d.get('status'))}"
                       f"@{short_rev(d.get('_rev'))}->{res}{'' if exc else ' ' + short_rev(r.get('rev'))}")
        body = ", ".join(out)
    elif name in ("get", "get_conflicted"):
        body = f"{short_id(args[0])} -> " + ("none" if ret is None else
                                          f"{ret.get('status')}@{short_rev(ret.get('_rev'))}"
                                          f"{' C' + str(len(ret['_conflicts'])) if ret.get('_conflicts') else ''}"
                                          if isinstance(ret, dict) else "?")
    elif name == "changes":
        body = f"{len(ret[0])} changes" if ret else ""
    elif name in ("put", "put_quorum", "delete"):
        d = args[0]
        body = f"{short_id(d if isinstance(d, str) else d.get('_id', ''))} -> {ret[:2] if isinstance(ret, tuple) else ret}"
    else:
        body = ""
    err = f" !{type(exc).__name__}" if exc else ""
    return f"{name} {body}{err}"


def short_id(doc_id: str) -> str:
    if doc_id.startswith("after:run:"):
        return "fence " + short(doc_id[len("after:run:"):])
    if doc_id.startswith(HEARTBEAT_PREFIX):
        return "heartbeat " + doc_id.rsplit(":", 2)[-2]
    return doc_id


def short_rev(rev) -> str:
    return str(rev)[:6] if rev else "-"


def short(run_id: str) -> str:
    task, _, rest = run_id.partition("@")
    return f"{task}@{rest[11:22]}"


# -- the invariants ---------------------------------------------------------------------------

def check(sim: Sim) -> list[str]:
    failures = []
    cl = sim.cluster
    by_run = Counter(r for r, _, _ in sim.starts)
    by_occurrence = Counter(r.rsplit("#", 1)[0] for r, _, _ in sim.starts)
    for run, k in by_run.items():
        if k > 1:
            failures.append(f"ran twice: run {run} started {k} times "
                            f"({', '.join(p for r, _, p in sim.starts if r == run)})")
    for occ, k in by_occurrence.items():
        if k > 1 and by_run[occ] < k and not any(by_run[r] > 1 for r in by_run if r.startswith(occ)):
            failures.append(f"ran twice: occurrence {occ} started {k} times")
    reader = cl.node(0)
    for task_id, expect in sorted(sim.tasks.items()):
        doc = reader.get_conflicted(task_id)
        if doc is None:
            failures.append(f"deleted: task {task_id} is gone (no user deletes)")
            continue
        status = doc.get("status")
        touched = expect["user"]
        alive = {p.me.process for p in sim.procs if p.alive}
        owner = (doc.get("owner") or {}).get("process")
        started = [r for r, _, _ in sim.starts if r.startswith(task_id + "@")]
        running = (doc.get("running") or {}).get("run")
        if status == "error" and (doc.get("error") or {}).get("type") == "Interrupted" and not (
                sim.partitioned or sim.killed or started):
            failures.append(f"interrupted, never started, nobody cut off: {task_id}")
        elif status in ("done", "error", "canceled"):
            pass
        elif status == "paused" and "pause" in touched:
            pass
        elif status == "running" and owner in alive and any(
                running in p.runner.pending for p in sim.procs if p.me.process == owner):
            pass   # a run under way at the end
        elif status == "scheduled" and owner in alive and (
                parse_date(doc["date"]).timestamp() > sim.quiet_at - BOUND_S):
            pass   # a repeating task, held for its next occurrence
        else:
            failures.append(f"stuck: task {task_id} ({expect['kind']}, user {touched or 'none'}) is "
                            f"{status!r}, owner {owner}, date {doc.get('date')}, {doc.get('runs', 0)} runs")
        if expect["answered"] == "cancel" and status not in ("canceled", "done", "error"):
            failures.append(f"cancel lost: the user's last word on {task_id} was a cancel CouchDB "
                            f"took, and it is {status!r} ({doc.get('runs', 0)} runs)")
        if expect["kind"] != "repeat" and not touched and status != "done" and not (
                status == "error" and (sim.partitioned or sim.killed)):
            failures.append(f"never ran: one-shot task {task_id} is {status!r}")
    for run, at, proc in sim.starts:
        due = parse_date(run.partition("@")[2].rsplit("#", 1)[0].replace("now:", "")).timestamp()
        since = max([due] + [u for u in sim.ups if u <= at + 0.1])   # StepRunner dates a start up to a step back
        if at - since > BOUND_S:
            failures.append(f"late: run {run} started {at - since:.1f}s after it was due (bound {BOUND_S}s)")
    for doc_id, leaves in cl.conflicted().items():
        if doc_id.startswith("after:run:"):
            continue   # rival creations of a fence: a loss for each; liveness above sees the effect
        failures.append(f"conflict left: {doc_id} has live leaves {', '.join(short_rev(r) for r in leaves)}")
    return failures


class SeededUuid:
    """uuid.uuid4 from the schedule's seed (a fence's nonce is part of its revision)."""

    def __init__(self, rng):
        self.rng = rng

    def uuid4(self):
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)


def relevant(trace: list[str], failures: list[str], last: int = 50) -> list[str]:
    """The last steps that concern the failing tasks (and every fault and heal):
    what a reader of a failure needs, where the plain last steps are mostly heartbeats."""
    import re
    ids = set(re.findall(r"\b(t\d+)\b", " ".join(failures)))
    ids |= {m for f in failures for m in re.findall(r"(after:process:\S+?)(?: |$)", f)}
    keys = [re.compile(rf"(?<![\w:]){re.escape(i)}(?![\w])") for i in ids]
    picked = [line for line in trace if any(k.search(line) for k in keys) or
              any(w in line for w in ("FAULT", "heal", "QUIET", "KILL", "RESTART"))]
    return (picked or trace)[-last:]


def run_schedule(seed: int, procs: int | None = None):
    """(failures, trace, sim) of one schedule: the trace is the last steps about what failed."""
    real = (afterd_clock.epoch_s, afterd_clock.monotonic_s)
    fences_mod.uuid = SeededUuid(random.Random(seed ^ 0x5EED))
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        sim = None
        try:
            sim = Sim(seed, Path(d), procs=procs)
            sim.run()
            failures = check(sim)
        except Exception as e:
            import traceback
            failures = [f"harness error: {type(e).__name__}: {e}\n{traceback.format_exc()}"]
        finally:
            afterd_clock.epoch_s, afterd_clock.monotonic_s = real
            fences_mod.uuid = uuid
        return failures, relevant(sim.trace, failures) if sim else [], sim
