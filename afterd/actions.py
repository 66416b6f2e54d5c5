"""What the loop does with a decision (decide.py): claim, arm, refuse, hold, cancel, forget.

A mixin of Worker (worker.py), split out by concern: it acts on `self.entries`,
`self.timers`, and writes through `self._write` (one write per document in flight).
The time is the loop turn's (`self.now_s`, `self.now()`), never the clock's.
"""

import logging

from afterd import claims, decide
from afterd import outcome as outcomes
from afterd.entry import Entry
from afterd.logs import about_doc
from afterd.runs import run_key
from afterd.task import TaskError, format_date, parse_task
from afterd.writer import Write

log = logging.getLogger("after.worker")

FORGOTTEN_MAX = 100_000  # finished tasks remembered, to tell stale feed echoes apart
HOT_AHEAD_S = 2.0        # a task armed to run within this long stays parsed (entry.py)


class Acting:
    def _decide_all(self, docs):
        for doc in docs:
            self._decide(doc)

    def _decide(self, doc):
        """Given the current version of a document, do what its state asks of us (decide.py)."""
        doc_id = doc.get("_id", "")
        if doc_id.startswith(("_design/", claims.HEARTBEAT_PREFIX)):
            return
        entry = self.entries.get(doc_id)
        self._parked.pop(doc_id, None)
        if entry is None and not self._my_share(doc):
            # Unowned, and another live process's share: it claims it. Kept here in case
            # that process goes before it does (a new view decides it again: _ev_view).
            self._parked[doc_id] = doc
            return
        held = decide.Held(entry.rev, entry.phase, entry.writing) if entry is not None else None
        action = decide.decide(doc, held, me=self.me.process, worker=self.name,
                               forgotten_gen=self._forgotten.get(doc_id, 0))
        kind = action.kind
        if kind == decide.IGNORE:
            return
        if (kind == decide.FORGET and action.cancel_run and self.cluster and not doc.get("_deleted")
                and doc.get("worker") == self.name and entry.phase in ("starting", "running")):
            # Taken over (our lease lapsed) while our run goes on: that run went through its
            # fence, so it is this occurrence's one run. Let it end, and write its outcome
            # onto the task as its new owner holds it (runs.py, _write_outcome).
            entry.doc = doc
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
            self._cancel(entry, doc)
        elif kind in (decide.PAUSE, decide.HOLD):
            self._hold_paused(entry, write=kind == decide.PAUSE)
        elif kind == decide.CLAIM:
            self._claim(entry, reset_anchor=action.reset_anchor, run_now=action.run_now)
        elif kind == decide.ARM:
            self._arm(entry)
        elif kind == decide.RECOVER:
            self._recover_running(entry)

    def _my_share(self, doc) -> bool:
        """Whether an unowned task is ours to act on (claims.rendezvous over the live view)."""
        if claims.owner_of(doc) is not None or doc.get("_deleted") or doc.get("worker") != self.name:
            return True   # decide() says what to do with it
        return claims.rendezvous(doc["_id"], self._view or (self.me.process,)) == self.me.process

    def _ev_view(self, view, alive):
        """The heartbeat scan's live processes. When they change, the unowned tasks we left
        to others are decided again: a process that went leaves its share to the rest."""
        self._alive = alive
        view = tuple(view)
        if view == self._view:
            return
        if self._view is not None:
            log.info("processes sharing worker %s: %s", self.name, ", ".join(view))
        self._view = view
        parked, self._parked = self._parked, {}
        self._decide_all(list(parked.values()))

    def _ev_own(self, docs):
        """Tasks a sweep found owned by us (lease.py): decide those we do not hold."""
        self._decide_all([d for d in docs if d.get("_id") not in self.entries])

    def _task_or_refuse(self, doc):
        """The parsed task; or None, once the document is being ended as error."""
        try:
            # The database's floor on repeats too: a task that got in before it was set
            # could never be claimed (validate_doc_update refuses every write of it) but
            # may be ended as InvalidTask, which validation lets through.
            return parse_task(doc, self.min_repeat_s)
        except TaskError as e:
            self._refuse(doc, e)
            return None

    def _cancel(self, entry, doc):
        self._write(entry, {**doc, "status": "canceled", "owner": self.me.owner_field(),
                            "finished_at": format_date(self.now())}, "canceled")

    def _claim(self, entry, reset_anchor, run_now=False):
        doc = entry.doc
        if doc.get("status") == "cancel":
            self._cancel(entry, doc)   # a takeover of a task its user canceled: end it, never run it
            return
        task = self._task_or_refuse(doc)
        if task is None:
            return
        # A paused task stays paused whoever holds it (a takeover must not resume it).
        status = "paused" if doc.get("status") in ("pause", "paused") else "scheduled"
        claimed = {**doc, "status": status, "owner": self.me.owner_field()}
        if status == "scheduled":
            claimed.pop("paused_at", None)   # a resume ends the pause `after explain` tells of
        if run_now:
            # An extra run, due now: the field keeps the request across a crash, and the
            # run's own id (claims.run_id of this instant) keeps it apart from occurrences.
            claimed["run_now"] = format_date(self.now())
        if reset_anchor or "anchor" not in doc:
            claimed["anchor"] = format_date(task.date)
            claimed["occurrence"] = 0
            # The first occurrence gets its jitter too, and a cron repeat runs first when its
            # expression matches (the anchor keeps the user's date); without either, the
            # user's date stays as the user wrote it.
            first = outcomes.first_date(task)
            if first is None:
                claimed["status"] = "done"      # until/count end the chain before its first run
            elif first != task.date:
                claimed["date"] = format_date(first)
        claimed.pop("running", None)
        entry.phase = "new"
        self._write(entry, claimed, "claim")

    def _hold_paused(self, entry, write: bool):
        """`pause`: disarm and say `paused`; `paused`: hold it, armed by nobody."""
        self.timers.disarm(entry.id)
        entry.phase = "held"
        if write:
            # paused_at: since when, for `after explain` and the console (a user's `pause` has no date).
            self._write(entry, {**entry.doc, "status": "paused", "owner": self.me.owner_field(),
                                "paused_at": format_date(self.now())}, "paused")
        else:
            entry.cool()   # held until a user resumes it (a write cools it too)

    def _refuse(self, doc, error):
        """A document no worker can use (it got past validation): end it as error, saying why."""
        log.warning("task %s is unusable: %s", doc.get("_id"), error, extra=about_doc(doc))
        entry = self.entries.get(doc["_id"]) or self.entries.setdefault(doc["_id"], Entry(doc=doc))
        entry.doc = doc
        self._write(entry, {**doc, "status": "error", "owner": self.me.owner_field(),
                            "error": {"type": "InvalidTask", "message": str(error), "traceback": None},
                            "finished_at": format_date(self.now())}, "refused")

    def _arm(self, entry):
        doc = entry.doc
        task = self._task_or_refuse(doc)
        if task is None:
            return
        skip = outcomes.missed_fields(doc, self.now())
        if skip is not None:
            # Occurrences it must not run (catchup "none", or older than catchup_window).
            log.info("task %s: skipping missed occurrences: next %s", entry.id, skip.get("date"),
                     extra=about_doc(doc, in_text=True))
            entry.phase = "new"
            note = outcomes.skipped_note(doc, skip, self.now())
            self._write(entry, {**doc, **skip, **({"skipped": note} if note else {})}, "catchup")
            return
        run, due = run_key(doc, task)
        if self._predecessor:   # only after a restart over a journal with open runs
            prior = self._predecessor.pop(run, None)
            if prior is not None and prior.state in ("started", "outcome"):
                self._settle_predecessor(entry, run, prior)
                return
        entry.phase = "armed"
        at_s = due.timestamp()
        self.timers.arm(entry.id, at_s)
        if at_s > self.now_s + HOT_AHEAD_S:
            entry.cool()   # it waits: held packed until then (entry.py)

    def _write(self, entry, doc, tag):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("write %s %s (%s) based on %s", doc["_id"], doc.get("status"), tag, doc.get("_rev"),
                      extra=about_doc(doc, entry.run_id, in_text=True))
        entry.writing = True
        urgent = tag == "claim" or (tag == "running" and entry.confirm_first)
        self.writer.submit(Write(doc=doc, tag=tag, urgent=urgent))
        # The write carries the new version; until it is answered the entry need not hold
        # the old one parsed (a million claims in flight at start-up stay small).
        entry.cool()

    def _forget(self, doc_id, why, cancel_run=False):
        entry = self.entries.pop(doc_id, None)
        self._held.pop(doc_id, None)
        if entry is not None:
            # Remember its last version a while, so a late echo of an older one is ignored.
            self._forgotten[doc_id] = decide.rev_gen(entry.rev)
            if len(self._forgotten) > FORGOTTEN_MAX:
                self._forgotten.pop(next(iter(self._forgotten)))
        self.timers.disarm(doc_id)
        if entry is not None and cancel_run and entry.run_id and entry.phase in ("starting", "running"):
            log.info("task %s %s: stopping its run", doc_id, why,
                     extra=about_doc(entry.doc, entry.run_id, in_text=True))
            self.runner.cancel(entry.run_id)
