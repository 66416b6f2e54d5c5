"""What a worker does with a version of a task document (pure: no I/O, no clock).

`decide(doc, held, me=..., worker=...)` looks at the document the feed (or a write's
answer, or the start-up read) handed the loop, and at what the loop holds of that task,
and names one action. The loop (worker.py) carries it out: the writes, the timers and
the runner are its business, the rule is this module's.

The order of the questions is the rule:
1. Is it news? An echo of our own write, or an older version, changes nothing; the same
   generation on another branch is news (a cluster resolved a conflict).
2. Is our own write of it in flight? Then decide on it once that write is answered.
3. Is it still ours to act on (not deleted, same worker, a status we know, not owned
   by another process)?
4. What does its status ask, given where our run of it stands?
"""

from dataclasses import dataclass

from afterd.claims import owner_of
from afterd.task import FINAL, TaskError, normalize_status

RUN_PHASES = ("fencing", "starting", "running", "finishing")

# Actions
IGNORE = "ignore"          # nothing to do (an echo, an older version, a peer's task)
LATER = "later"            # our write of it is in flight: decide on this version once answered
FORGET = "forget"          # let it go (and stop our run of it when cancel_run)
REFUSE = "refuse"          # unusable (it got past validation): end it as error, saying why
CANCEL_RUN = "cancel_run"  # the user canceled it while our run goes on: stop the run
CANCEL = "cancel"          # the user canceled it: write `canceled`
PAUSE = "pause"            # the user paused it: disarm, write `paused`
HOLD = "hold"              # paused: keep it, armed by nobody
CLAIM = "claim"            # take it (write scheduled, owned by us)
ARM = "arm"                # ours and scheduled: arm its timer
RECOVER = "recover"        # ours and `running`, but not in this process: settle that run
KEEP = "keep"              # a run of ours is under way: the new version only updates what we hold


@dataclass(frozen=True)
class Held:
    """What the loop holds of a task."""
    rev: str | None
    phase: str          # new | armed | paused (lease) | held (by the user) | starting | running | finishing
    writing: bool = False


@dataclass(frozen=True)
class Action:
    kind: str
    why: str = ""
    cancel_run: bool = False
    reset_anchor: bool = False
    run_now: bool = False


def decide(doc: dict, held: Held | None, *, me: str, worker: str, forgotten_gen: int = 0) -> Action:
    """The action the loop takes for this version of a task (see the module's docstring).

    forgotten_gen: the generation of the last version of a task we let go (0: none), so
    that a late echo of it is not taken for news.
    """
    known_gen = rev_gen(held.rev) if held is not None else forgotten_gen
    gen = rev_gen(doc.get("_rev"))
    if not doc.get("_deleted") and (gen < known_gen or (gen == known_gen and (
            held is None or doc.get("_rev") == held.rev))):
        # An echo of our own write, or older: we already acted on newer. The same
        # generation on another branch is news: a cluster resolved a conflict our way
        # or not (afterd/conflicts.py), and which way decides whether we still own it.
        return Action(IGNORE, "echo")
    if held is not None and held.writing:
        return Action(LATER)
    if doc.get("_deleted"):
        return Action(FORGET, "deleted", cancel_run=True)
    if doc.get("worker") != worker:
        return Action(FORGET, "moved to another worker", cancel_run=True)
    try:
        status = normalize_status(doc.get("status"))
    except TaskError as e:
        return Action(REFUSE, str(e))
    running = held is not None and held.phase in RUN_PHASES
    if status in FINAL:
        # During our run the outcome we are about to write decides; else it is over.
        return Action(IGNORE, status) if running else Action(FORGET, status)
    owner = owner_of(doc)
    mine = owner == me
    if owner is not None and not mine:
        if held is not None:
            return Action(FORGET, f"taken over by {owner}", cancel_run=True)
        return Action(IGNORE, "another process's")   # the heartbeat scan decides if it is gone
    if running:
        if status == "cancel" and held.phase != "finishing":
            return Action(CANCEL_RUN)
        return Action(KEEP)   # a pause or run-now waits for the run's end (outcome.apply_outcome)
    if status == "cancel":
        return Action(CANCEL)
    if status == "pause":
        return Action(PAUSE)
    if status == "paused":
        return Action(HOLD)
    if status in ("resume", "run"):
        return Action(CLAIM, run_now=status == "run")
    if status in ("waiting", "reschedule") or not mine:
        return Action(CLAIM, reset_anchor=True)
    if status == "scheduled":
        return Action(ARM)
    if status == "running":
        return Action(RECOVER)
    return Action(IGNORE, f"status {status}")


def rev_gen(rev) -> int:
    """The generation of a revision ("7-abc" -> 7; none: 0): it only grows along a document's history."""
    try:
        return int(str(rev or "0").split("-", 1)[0])
    except ValueError:
        return 0
