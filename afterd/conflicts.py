"""Deterministic resolution of a task's conflicting revisions (pure: no I/O, no clock).

On a CouchDB cluster two writes to one task can both be accepted, on different
nodes; the task then has several leaf revisions. Every worker that sees the
conflict computes the same resolution from the same leaves, whatever order it
got them in, and writes it in one `_bulk_docs`: the merged document over
CouchDB's winning revision, and a deletion of every other leaf.

The rule (docs/guarantees.md, "With a CouchDB cluster"):

1. The base, whose ownership and run record the merged document keeps, is the
   leaf that got furthest with the task, in this order: the most runs recorded
   (`runs`); a final status; a run under way (`running`, it may have begun);
   then CouchDB's own order (longest history, then highest rev hash). The
   design first said "earliest claim wins", but concurrent claims are made at
   the same generation, so there is no earliest to find, and a claim made at a
   later generation was made from newer information (a lease that ended, a
   user's reschedule): progress is what decides, because taking a task from the
   process that got further costs a run, taking it from one that did not costs
   nothing.
2. A user's edit (`cancel`, `reschedule`) on another leaf is applied to the
   base: its status, and its own fields (job, date for a reschedule, anything
   not written by workers). Not when the base is final: the run it asked to
   move or stop has happened, as when a user's PUT comes after the outcome on
   one node and gets 409; the edit is then kept in `superseded`. Of several
   edits, a cancel beats a reschedule, then CouchDB's order.
3. Nothing a losing leaf carries is dropped silently: a claim by another owner,
   a run record, an outcome or an edit that the merged document does not have
   is recorded in its `superseded` list, with what was lost (`lost`). So a run
   made on a conflicting claim (a duplicate) is visible in the document, and
   an outcome recorded on a losing branch is kept there.
4. When the merged document is the winning revision as it stands, nothing is
   written but the deletions: two workers resolving the same conflict at once
   then converge instead of making a new conflict of their two merges.
"""

from dataclasses import dataclass

from afterd.claims import owner_of
from afterd.task import FINAL, STATUS_ALIASES

USER_EDITS = ("cancel", "reschedule")
# A leaf a worker ended `canceled` carries its user's cancel too: a run's outcome written on
# another branch while the cancel was answered must not undo it (a cluster model schedule).
EDITS = (*USER_EDITS, "canceled")
# Fields workers write; everything else in a task (job, worker, repeat, timeout,
# retry, the user's own fields) is the user's, and `date` is the user's in a reschedule.
WORKER_FIELDS = frozenset({"status", "owner", "running", "anchor", "occurrence", "attempts", "runs",
                           "last_run", "result", "error", "started_at", "finished_at", "queued_ms",
                           "date", "superseded", "history", "run_now"})
OUTCOME_FIELDS = ("runs", "last_run", "result", "error", "started_at", "finished_at")
# CouchDB's metadata, never part of the content compared or written.
META_FIELDS = frozenset({"_rev", "_conflicts", "_deleted_conflicts", "_revisions", "_revs_info"})
SUPERSEDED_MAX = 20   # the most recent entries kept, so a task that conflicts often stays small


@dataclass(frozen=True)
class Resolution:
    winner_rev: str        # CouchDB's winning revision, which the merged document replaces
    doc: dict | None       # the merged document to write (with _rev = winner_rev); None: keep the winner
    losers: list[str]      # the other leaves, to delete in the same _bulk_docs
    merged: dict           # the task after resolution (doc, or the winner as it is), without _rev


def rev_key(rev: str) -> tuple[int, str]:
    """How CouchDB orders revisions: generation as a number, then the hash as a string."""
    gen, _, digest = str(rev).partition("-")
    try:
        return int(gen), digest
    except ValueError:
        return 0, str(rev)


def status_of(doc: dict) -> str:
    status = doc.get("status")
    return STATUS_ALIASES.get(status, status) if isinstance(status, str) else ""


def runs_of(doc: dict) -> int:
    runs = doc.get("runs")
    return int(runs) if isinstance(runs, (int, float)) and not isinstance(runs, bool) and runs >= 0 else 0


def couch_winner(leaves: list[dict]) -> dict:
    return max(leaves, key=lambda d: rev_key(d["_rev"]))


def progress_key(doc: dict) -> tuple:
    """Rule 1: the leaf that got furthest with the task sorts last."""
    status = status_of(doc)
    return (runs_of(doc), status in FINAL, status == "running", rev_key(doc["_rev"]))


def edit_key(doc: dict) -> tuple:
    return (status_of(doc) in ("cancel", "canceled"), rev_key(doc["_rev"]))


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in META_FIELDS}


def user_fields(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in WORKER_FIELDS and not k.startswith("_")}


def apply_edit(base: dict, edit: dict) -> dict:
    """Rule 2: the user's status and fields over the base's ownership, runs and outcome."""
    merged = {k: v for k, v in base.items() if k in WORKER_FIELDS or k.startswith("_")}
    merged.update(user_fields(edit))
    merged["status"] = edit.get("status")
    if status_of(edit) == "reschedule" and "date" in edit:
        merged["date"] = edit["date"]
    return merged


def what_is_lost(leaf: dict, merged: dict, applied_edit: dict | None) -> list[str]:
    """Rule 3: what of `leaf` the merged document does not carry."""
    lost = []
    owner = owner_of(leaf)
    if owner is not None and owner != owner_of(merged):
        lost.append("claim")
    if leaf.get("running") and leaf.get("running") != merged.get("running"):
        lost.append("run")
    # A leaf with fewer runs than the merged document carries, as far as can be told, an
    # outcome the merged document's history already has (a leaf keeps its ancestors'
    # outcome fields, and their bodies are not kept to compare against).
    records_outcome = runs_of(leaf) > 0 or status_of(leaf) in FINAL
    if records_outcome and runs_of(leaf) >= runs_of(merged) and \
            any(leaf.get(f) != merged.get(f) for f in OUTCOME_FIELDS):
        lost.append("outcome")
    if status_of(leaf) in EDITS and leaf is not applied_edit and status_of(merged) != status_of(leaf):
        lost.append("edit")
    return lost


def superseded_entry(leaf: dict, lost: list[str]) -> dict:
    entry = {"rev": leaf["_rev"], "lost": lost, "status": leaf.get("status"), "owner": owner_of(leaf),
             "date": leaf.get("date")}
    if "run" in lost:
        entry["running"] = leaf["running"]
    if "outcome" in lost:
        entry.update({f: leaf[f] for f in OUTCOME_FIELDS if f in leaf})
    return entry


def merge_superseded(leaves: list[dict], new_entries: list[dict]) -> list[dict]:
    """Every leaf's earlier entries and the new ones, once each, oldest revision first."""
    by_rev = {}
    for leaf in leaves:
        for entry in leaf.get("superseded") or []:
            if isinstance(entry, dict) and isinstance(entry.get("rev"), str):
                by_rev.setdefault(entry["rev"], entry)
    for entry in new_entries:
        by_rev[entry["rev"]] = entry
    ordered = sorted(by_rev.values(), key=lambda e: rev_key(e["rev"]))
    return ordered[-SUPERSEDED_MAX:]


def resolve(leaves: list[dict]) -> Resolution:
    """The resolution of one task's live leaf revisions (each a full document with _id, _rev).

    Deterministic: the same leaves in any order give the same Resolution.
    """
    if not leaves:
        raise ValueError("resolve needs at least one revision")
    ids = {d.get("_id") for d in leaves}
    if len(ids) != 1:
        raise ValueError(f"revisions of different documents: {sorted(map(str, ids))}")
    leaves = sorted({d["_rev"]: d for d in leaves}.values(), key=lambda d: rev_key(d["_rev"]))
    winner = couch_winner(leaves)
    base = max(leaves, key=progress_key)
    edits = [d for d in leaves if status_of(d) in EDITS]
    edit = max(edits, key=edit_key) if edits else None
    applied = None
    merged = content(base)
    if edit is not None and edit is not base and status_of(base) not in FINAL:
        merged, applied = content(apply_edit(base, edit)), edit
    new_entries = []
    for leaf in leaves:
        if leaf is base:
            continue
        lost = what_is_lost(leaf, merged, applied)
        if lost:
            new_entries.append(superseded_entry(leaf, lost))
    superseded = merge_superseded(leaves, new_entries)
    merged.pop("superseded", None)
    if superseded:
        merged["superseded"] = superseded
    losers = [d["_rev"] for d in leaves if d is not winner]
    if merged == content(winner):
        return Resolution(winner["_rev"], None, losers, merged)
    return Resolution(winner["_rev"], {**merged, "_rev": winner["_rev"]}, losers, merged)
