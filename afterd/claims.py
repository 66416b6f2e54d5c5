"""Ownership of tasks: who may run what, decided from documents and `now` (pure).

A worker process has an identity `<worker>:<host>:<slot>` (slot: see
journal.open_slot) and one heartbeat document, `after:process:<identity>`,
which it renews every `lease_s / 4`. The heartbeat says until when the lease
holds (`expires_at`). The owner stops starting runs `skew_margin_s` before
its lease ends by its own clock; every other process waits until
`skew_margin_s` after it by its clock before taking over. So as long as
clocks disagree by less than the margin, two processes never both believe
they may start the same occurrence.

Tasks record their owner as `{"process": identity, "host": ..., "pid": ...}`.
Every change of owner or status is a conditional update on `_rev`: of two
processes racing, CouchDB answers 409 to one, which re-reads and decides again.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from afterd.task import TaskError, format_date, parse_date

HEARTBEAT_PREFIX = "after:process:"


def life_of(process: str, pid, started) -> str:
    return f"{process}#{pid}@{started or ''}"


def heartbeat_prefix(worker: str) -> str:
    """The id prefix of the heartbeats of `worker`'s processes (read with _all_docs, no index)."""
    return f"{HEARTBEAT_PREFIX}{worker}:"


def heartbeats_of(worker: str, docs: list[dict]) -> list[dict]:
    """The heartbeats among `docs` that are `worker`'s: a worker named "a:b" shares the prefix of "a"."""
    return [d for d in docs if d.get("type") == "process" and d.get("worker") == worker]


# What to do with a task whose owner is gone.
CLAIM = "claim"              # nobody can have started it: take it and run it as planned
INTERRUPTED = "interrupted"  # its fate is unknown: end it as error (or retry, if allowed)
WRITE_OUTCOME = "outcome"    # the dead owner's journal has the outcome: write that
LEAVE = "leave"              # its owner is alive (or may be): not ours to touch


@dataclass(frozen=True)
class Identity:
    worker: str
    host: str
    slot: int
    pid: int
    started: str = ""    # when this life of the process began: a pid can come back (PID 1 in a container)

    @property
    def process(self) -> str:
        return f"{self.worker}:{self.host}:{self.slot}"

    @property
    def life(self) -> str:
        """This life of the process: a process started again in its slot is another one."""
        return life_of(self.process, self.pid, self.started)

    @property
    def heartbeat_id(self) -> str:
        return HEARTBEAT_PREFIX + self.process

    def owner_field(self) -> dict:
        return {"process": self.process, "host": self.host, "pid": self.pid}


def heartbeat_doc(me: Identity, now: datetime, lease_s: float, stopped=False, counters=None,
                  since: datetime | None = None) -> dict:
    """The body of this process's heartbeat (without _id/_rev).

    `counters` (metrics.Metrics.heartbeat_fields: runs by outcome, ...) go under
    "metrics", so `after list` and the console can show them over CouchDB alone.
    """
    expires = now if stopped else now + timedelta(seconds=lease_s)
    body = {
        "type": "process",
        "worker": me.worker,
        "host": me.host,
        "slot": me.slot,
        "pid": me.pid,
        "started": me.started,
        "beat_at": format_date(now),
        "expires_at": format_date(expires),
        "lease_s": lease_s,
        "stopped": stopped,
        "since": format_date(since or now),   # when this process first beat: it joins its peers later
    }
    if counters is not None:
        body["metrics"] = counters
    return body


def owner_of(doc: dict) -> str | None:
    owner = doc.get("owner")
    return owner.get("process") if isinstance(owner, dict) else None


def lease_expired(heartbeat: dict | None, now: datetime, skew_margin_s: float) -> bool:
    """True when others may take the tasks of the process behind `heartbeat`.

    No heartbeat at all (never written, or deleted) counts as expired: the owner
    field points at a process that does not announce itself.
    """
    if heartbeat is None or heartbeat.get("stopped"):
        return True
    try:
        expires = parse_date(heartbeat.get("expires_at"))
    except TaskError:
        return True
    return now > expires + timedelta(seconds=skew_margin_s)


def may_have_started(task_date: datetime, heartbeat: dict | None, journal_state: str | None) -> bool:
    """Could the dead owner have started the occurrence planned at `task_date`?

    Its journal, when we can read it (same host), answers exactly. Otherwise the
    lease does: the owner stopped starting runs when its lease ended, so an
    occurrence planned after `expires_at` cannot have started. A cleanly stopped
    owner wrote every outcome before it said so.
    """
    if journal_state is not None:
        return journal_state in ("started", "outcome")
    if heartbeat is None:
        return True
    if heartbeat.get("stopped"):
        return False
    try:
        return task_date <= parse_date(heartbeat.get("expires_at"))
    except TaskError:
        return True


def takeover(status: str, task_date: datetime, heartbeat: dict | None,
             journal_state: str | None, now: datetime) -> str:
    """What a live process does with a task whose owner's lease has ended."""
    if journal_state == "outcome":
        return WRITE_OUTCOME
    if status in ("reschedule", "cancel", "waiting", "pause", "paused", "resume", "run"):
        return CLAIM  # the user's word counts (a paused task stays paused: Worker._claim)
    if status == "running":
        if journal_state == "intent":
            return CLAIM  # journaled but never started
        return INTERRUPTED
    if status == "scheduled":
        if task_date > now:
            return CLAIM
        return INTERRUPTED if may_have_started(task_date, heartbeat, journal_state) else CLAIM
    return LEAVE


def joined(heartbeat: dict, now: datetime, lease_s: float) -> bool:
    """Whether a live process has been announced long enough that every peer has seen it.

    Peers read the heartbeats every lease_s / 2 (lease.py); a process counts in the
    shares (rendezvous below) only once that much time and a margin have passed since its
    first beat, so that it and its peers start counting it at about the same time.
    """
    try:
        since = parse_date(heartbeat.get("since") or heartbeat.get("beat_at"))
    except TaskError:
        return False
    return now >= since + timedelta(seconds=lease_s * 0.75)


def alive(beats: list[dict], now: datetime, skew_margin_s: float) -> frozenset:
    """The lives ("<process>#<pid>", fences.life) whose lease holds, joined or not: a run's
    fence holder among them will write that run's outcome."""
    return frozenset(life_of(b["_id"][len(HEARTBEAT_PREFIX):], b.get("pid"), b.get("started")) for b in beats
                     if not lease_expired(b, now, skew_margin_s))


def live_view(me: str, beats: list[dict], now: datetime, skew_margin_s: float, lease_s: float) -> tuple[str, ...]:
    """The processes that share a worker's unowned tasks, as this process sees them now:
    the live, joined ones (this one included once joined, or at once when it is alone)."""
    peers = [b["_id"][len(HEARTBEAT_PREFIX):] for b in beats
             if not lease_expired(b, now, skew_margin_s) and joined(b, now, lease_s)]
    view = set(peers)
    mine = next((b for b in beats if b.get("_id") == HEARTBEAT_PREFIX + me), None)
    if not (view - {me}) or (mine is not None and joined(mine, now, lease_s)):
        view.add(me)
    return tuple(sorted(view))


def rendezvous(task_id: str, processes) -> str | None:
    """The process whose share a task is: highest random weight (rendezvous) hashing, so
    that every process computes the same owner from the same view, and a process that
    comes or goes moves only its own share. Processes of one worker then claim each
    task alone instead of racing for it (on a cluster every losing claim is a 202 or a
    conflict for the servers to settle). Not a safety rule: views can differ for a
    moment, and a race is then settled by the claim's conditional write and, on a
    cluster, by the run's fence (fences.py)."""
    best, owner = None, None
    for process in processes:
        weight = hashlib.blake2b(f"{process}\0{task_id}".encode(), digest_size=8).digest()
        if best is None or weight > best:
            best, owner = weight, process
    return owner


def run_id(task_id: str, date_iso: str, attempt: int) -> str:
    """One occurrence of a task (and which attempt at it): the unit of at-most-once."""
    return f"{task_id}@{date_iso}#{attempt}"
