"""Start-up: connect to CouchDB, build a worker's parts, load its tasks; `after start NAME`.

The loop (worker.py) gets its parts handed in (Worker.attach): the runner, the
heartbeat, the writer and the feed, each a thread here, each on its own store. A test
can hand it the same parts on an in-memory store and step them (tests/stepped.py).
"""

import logging
import os
import socket

from afterd import claims, clock, journal
from afterd.claims import Identity
from afterd.couch import Couch, CouchError, NotFound, Unauthorized, Unavailable
from afterd.design import design_doc, installed_floor
from afterd.exits import EXIT_NOPERM, EXIT_SOFTWARE, EXIT_UNAVAILABLE
from afterd.feed import Feed, has_conflicts, resolve_conflict, without_conflicts
from afterd.lease import ACTIVE, Heartbeat, as_a_quorum_has_them
from afterd.logs import about_doc, setup_logging
from afterd.runner import Runner
from afterd.task import format_date
from afterd.worker import Worker
from afterd.fences import Fences
from afterd.writer import Writer

log = logging.getLogger("after.worker")


def run_worker(name: str, settings) -> int:
    """`after start NAME` in the foreground: the exit code."""
    setup_logging(settings.log_level, fields={"WORKER": name})   # journal field on every line
    worker = Worker(name, settings)
    try:
        store = connect(settings)
        worker.cluster = is_cluster(store.quorum())
        floor = installed_floor(store)
        worker.min_repeat_s = settings.min_repeat_s if floor is None else floor
    except Unauthorized as e:
        log.error("%s", e)
        return EXIT_NOPERM
    except CouchError as e:
        log.error("%s", e)
        return EXIT_UNAVAILABLE
    try:
        start(worker, store)
    except BlockingIOError:
        log.error("state directory %s is locked by another process", worker.state_dir)
        return EXIT_SOFTWARE
    except (Unavailable, CouchError) as e:
        log.error("%s", e)
        return EXIT_UNAVAILABLE
    return worker.run()


def connect(settings) -> Couch:
    """CouchDB answered, the database and the design document are in place."""
    store = Couch(settings.couchdb_url, settings.database)
    store.info()
    store.ensure_database()
    # The floor on repeats is the database's: `after init` sets it, a worker keeps it.
    floor = installed_floor(store)
    store.ensure_design(design_doc(settings.min_repeat_s if floor is None else floor))
    return store


def is_cluster(quorum: dict) -> bool:
    """Whether the database keeps more than one copy of each document (GET /db's `cluster`).

    On a cluster a write can be taken by some copies and not others (202), and two
    conditional writes on one revision can both be kept: a run then starts only behind
    its fence, a document that a write quorum created for that run alone (fences.py,
    docs/guarantees.md). On one copy a conditional write is exact and no fence is made.
    """
    n, w = quorum.get("n", 1), quorum.get("w")
    if n <= 1:
        return False
    if w is not None and 2 * w <= n:
        log.warning("the database keeps n=%d copies with a write quorum w=%d, not a majority: two "
                    "fences of one run can both be answered 201, and a task may run twice "
                    "(docs/guarantees.md)", n, w)
    log.info("CouchDB cluster: n=%d copies, w=%s, r=%s: each run starts only behind its fence",
             n, w, quorum.get("r"))
    return True


def start(worker: Worker, store: Couch):
    """Lock a journal slot, start the runner, the heartbeat, the writer and the feed, and
    load the worker's tasks: after this the worker is ready to run()."""
    s, post = worker.settings, worker._post
    slot, journal_, predecessor = journal.open_slot(worker.state_dir)
    me = Identity(worker.name, s.host or socket.gethostname(), slot, os.getpid(), started=format_date(clock.now()))
    log.info("worker %s starting as %s (CouchDB %s, database %s, jobs %s)",
             worker.name, me.process, store.safe_url, s.database, s.jobs_dir)
    runner = Runner(s.jobs_dir, on_outcome=lambda o: post("outcome", o),
                    on_start=lambda run, t: post("started", run, t),
                    concurrency=s.concurrency, kill_grace_s=s.kill_grace_s,
                    trusted_uids={0, os.geteuid()}, journal_path=journal_.path,
                    memory_limit_bytes=s.memory_limit_bytes, output_limit=s.output_limit)
    heartbeat = Heartbeat(store.clone(), me, lease_s=s.lease_s, skew_margin_s=s.skew_margin_s,
                          state_dir=worker.state_dir, on_lease=lambda until, why: post("lease", until, why),
                          on_peer=lambda *a: post("peer", *a),
                          counters=lambda: heartbeat_fields(worker.metrics, runner))
    writer = Writer(store.clone(), on_result=lambda kind, w, info: post("write", kind, w, info),
                    on_state=lambda ok, why: post("problem", "writer", None if ok else why))
    checkpoint = f"after-feed-{me.process}"
    if store.get_local(checkpoint) is None:
        # First start of this identity: everything before now comes from the load below.
        store.put_local(checkpoint, {"seq": store.update_seq()})
    feed = Feed(store.clone(), worker.name, checkpoint, on_batch=worker._feed_batch,
                on_state=lambda state, why: post("feed", state, why),
                owner_process=me.process)
    fences = Fences(store.clone(), me, on_verdict=lambda *a: post("fence", *a),
                    on_state=lambda ok, why: post("problem", "fences", None if ok else why))
    worker.attach(me, journal_, predecessor, runner=runner, heartbeat=heartbeat, writer=writer, feed=feed,
                  fences=fences)
    runner.start()
    fences.start()
    worker.lease_until_s = heartbeat.renew()
    writer.start()
    load(worker, store, clock.epoch_s(), clock.monotonic_s())
    heartbeat.start()
    feed.start()


def heartbeat_fields(metrics, runner) -> dict:
    """What the heartbeat carries under `metrics`: the counters, and the job files this
    process cannot load ({job: why}; `after explain` and the console tell of them)."""
    fields = metrics.heartbeat_fields()
    broken = runner.broken_jobs
    if broken:
        fields["jobs_broken"] = broken
    return fields


def load(worker: Worker, store, now_s: float, now_m: float):
    """Arm every active task of this worker: ours, new ones, and those of dead peers."""
    worker.now_s, worker.now_m = now_s, now_m
    me, name, margin_s = worker.me, worker.name, worker.settings.skew_margin_s
    found = store.docs_with_prefix(claims.heartbeat_prefix(name))
    now = worker.now()
    read = as_a_quorum_has_them(store, claims.heartbeats_of(name, found), me.heartbeat_id, now, margin_s)
    seen = {process: s for process, s, _ in read}
    beats = {process: b for process, _, b in read}
    live = [b for b in beats.values() if b is not None]
    worker._view = claims.live_view(me.process, live, now, margin_s, worker.settings.lease_s)
    worker._alive = claims.alive(live, now, margin_s) | {me.life}
    active, foreign = set(), {}
    # Page by page, each decided and dropped before the next is read: a parsed page is
    # ~3 KB a task, the armed state ~0.5 KB (docs/benchmarks.md). A scan, not the
    # active_by_worker view: no index to build first (docs/benchmarks.md).
    for page in store.scan({"worker": name, "status": {"$in": ACTIVE}}, conflicts=True):
        mine = []
        for doc in (resolved(worker, store, d) for d in page):
            if doc.get("status") not in ACTIVE:
                continue
            active.add(doc["_id"])
            owner = claims.owner_of(doc)
            if owner is None or owner == me.process:
                mine.append(doc)
            else:
                foreign.setdefault(owner, []).append(doc)
        worker._decide_all(mine)
    for process, tasks in foreign.items():
        if process not in beats:   # a copy behind may miss a new heartbeat: ask a quorum
            beats[process] = seen[process] = quorum_get(store, claims.HEARTBEAT_PREFIX + process)
        beat, first = beats[process], seen[process]
        runs = None
        if first and first.get("host") == me.host and isinstance(first.get("slot"), int):
            runs = journal.read_if_dead(worker.state_dir, first["slot"])
        if runs is None and not claims.lease_expired(beat, now, margin_s):
            continue   # (a takeover rests on what a quorum says: as_a_quorum_has_them)
        worker._take_over(beat, process, tasks, runs)
    worker._close_predecessor_runs(active)
    worker.journal.commit()
    worker._flush_after_commit()
    log.info("loaded %d active tasks: %d armed", len(active), len(worker.timers))


def quorum_get(store, doc_id: str) -> dict | None:
    try:
        return store.get(doc_id)
    except NotFound:
        return None


def resolved(worker: Worker, store, doc: dict) -> dict:
    """A task found at start-up, its conflicting revisions (a CouchDB cluster) resolved
    as the feed resolves them; as CouchDB chose if that fails now (its next change
    tries again)."""
    if not has_conflicts(doc):
        return doc
    try:
        return resolve_conflict(store, doc)
    except (CouchError, LookupError, TypeError, ValueError) as e:   # wrong shapes too
        log.warning("task %s: conflicting revisions not resolved at start-up: %s", doc["_id"], e,
                    extra=about_doc(doc, in_text=True))
        return without_conflicts(doc)

