"""Runs: starting the due ones, the `running` write, and writing each outcome.

A mixin of Worker (worker.py), split out by concern. Durable order for a run:
journal intent (fsync) -> runner; outcome -> journal (fsync) -> CouchDB -> journal
`written`. The time is the loop turn's (`self.now_s`, `self.now_m`, `self.now()`).
"""

import logging
from datetime import datetime, timezone

from afterd import claims
from afterd import fences as fencing
from afterd.conflicts import runs_of
from afterd import outcome as outcomes
from afterd.logs import about, about_doc
from afterd.metrics import outcome_kind
from afterd.runner import FORK_AHEAD_S, RunSpec
from afterd.task import TaskError, format_date, parse_date, parse_task
from afterd.writer import Write

log = logging.getLogger("after.worker")

START_BATCH_MAX = 512    # runs started per loop turn, so the loop keeps answering
# A run's `running` write waits until it has run this long: a run that ends sooner is
# written once, as its outcome (two revisions per run, not three). Under load the outcome
# of a no-op run reaches the loop 0.1-0.3 s after its start (forks and writes compete for
# the CPU), hence half a second. Safe for at-most-once: the journal has the start, and a
# peer taking over treats a `scheduled` task due before our lease ended as possibly
# started (claims.may_have_started), exactly as it would a `running` one.
RUNNING_WRITE_HOLD_S = 0.5


class Running:
    def _start_due_runs(self):
        now_s = self.now_s
        room = self._max_outstanding - len(self.runs)
        for task_id in self.timers.pop_due(now_s + FORK_AHEAD_S, limit=max(0, min(START_BATCH_MAX, room))):
            entry = self.entries.get(task_id)
            if entry is not None and entry.phase == "running":
                self.runner.cancel(entry.run_id)   # overlap "replace": its next occurrence is due
            if entry is not None and entry.phase == "fenced":
                self._recheck_fence(entry)
                continue
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

    def _lease_ok(self, at_s: float) -> bool:
        return self.lease_until_s is not None and self.now_m + (at_s - self.now_s) < self.lease_until_s

    def _begin(self, entry, task, at_s):
        run, due = run_key(entry.doc, task)
        if self.runs.get(run) == task.id:
            # This very run is under way here already (a version of the task from before
            # its start came back): it is not begun twice; its outcome closes it.
            entry.run_id, entry.phase = run, "running"
            return
        entry.run_id, entry.phase, entry.cancel = run, "starting", False
        self.runs[run] = task.id
        entry.spec = RunSpec(run_id=run, task_id=task.id, job=task.job_name, at_epoch_s=at_s,
                             timeout_s=task.timeout_s or self.settings.default_timeout_s,
                             task={"id": task.id, "worker": task.worker, "date": format_date(task.date),
                                   "arguments": task.arguments, "doc": entry.doc},
                             queued_since_s=self._queued_since(due.timestamp()))
        self.journal.add("intent", run, task=task.id, date=format_date(task.date))
        if self.cluster:
            # On a cluster the run starts once its fence is ours (fences.py): that, not the
            # task's conditional writes, is what keeps it to one process. _ev_fence goes on.
            entry.phase = "fencing"
            self._after_commit.append(lambda: self.fences.request(run, task.id))
        elif entry.confirm_first:
            # After a lapse or a takeover: start only once CouchDB confirms we still own it.
            running = {**entry.doc, "status": "running", "running": self._running_field(run, at_s)}
            self._after_commit.append(lambda: self._write(entry, running, "running"))
        else:
            # `running` is written once the run has started and outlived RUNNING_WRITE_HOLD_S.
            self._after_commit.append(lambda: self._submit(entry))

    def _ev_fence(self, run_id, task_id, verdict, holder):
        """The fence of a run we are about to start: ours (start it), or another's."""
        entry = self.entries.get(task_id)
        # ("running": _begin met this run under way, or still asking for its fence)
        ours = entry is not None and entry.run_id == run_id and entry.phase in ("fencing", "running")
        if verdict == fencing.WON and ours and not entry.cancel:
            if not self._lease_ok(entry.spec.at_epoch_s):
                # Our lease lapsed while we asked (a partition): peers may hold the task now.
                self.fences.release(run_id)
                self._unstart(run_id)
                entry.phase, entry.run_id = "paused", None
                self._lease_lapsed = True
                return
            entry.phase, entry.confirm_first = "starting", False   # the fence is the confirmation
            self._submit(entry)
            return
        self._unstart(run_id)
        if verdict == fencing.WON:
            # The task left us, or the user canceled it, while we asked: hand the fence back.
            self.fences.release(run_id)
            if ours:
                entry.phase, entry.run_id = "new", None
                if entry.cancel:
                    self._cancel(entry, entry.doc)
                else:
                    self._arm(entry)
            return
        if not ours:
            return
        log.info("task %s: run %s is held by %s; waiting for its outcome", task_id, run_id, holder,
                 extra=about_doc(entry.doc, run_id, in_text=True))
        entry.phase, entry.fenced_by = "fenced", holder
        self.timers.arm(task_id, self.now_s + self.settings.lease_s / 2)

    def _unstart(self, run_id):
        """A run we began but will not start (journaled as intent): close it."""
        self.runs.pop(run_id, None)
        self.journal.add("written", run_id)

    def _recheck_fence(self, entry):
        """A run whose fence another process holds, still not moved on: while that process
        lives, ask for the fence again (it hands back a fence it did not use); once it is
        gone, that run may have started: end it as interrupted (claims.may_have_started)."""
        holder, run = entry.fenced_by, entry.run_id
        if holder in self._alive and holder != self.me.life:
            entry.phase = "armed"
            self._begin(entry, parse_task(entry.doc), self.now_s)
            return
        entry.phase, entry.taking_from = "new", holder
        self._interrupted(entry, run, f"process {holder} held its fence and is gone")

    def _queued_since(self, date_s: float) -> float | None:
        """Since when a run begun now waited for room (None: it did not)."""
        if self._backlog_since_s is None or date_s > self.now_s:
            return None
        return max(date_s, self._backlog_since_s)

    def _running_field(self, run, at_s) -> dict:
        return {"run": run, "process": self.me.process, "since": format_date(_utc(max(at_s, self.now_s)))}

    def _submit(self, entry):
        self.runner.submit(entry.spec)

    def _ev_started(self, run_id, started_at_s):
        task_id = self.runs.get(run_id)
        entry = self.entries.get(task_id) if task_id else None
        # The zygote journaled the start itself, before the job could begin.
        if self.fences is not None:
            self.fences.forget(run_id)   # begun: its fence stands for good
        if entry is not None and entry.run_id == run_id:
            if entry.phase == "starting" and not entry.confirm_first:
                self._hold(task_id, started_at_s, self._running_field(run_id, started_at_s))
            entry.phase = "running"
            replace_at = outcomes.replace_due(entry.doc, self.now())   # overlap "replace"
            if replace_at is not None:
                self.timers.arm(task_id, replace_at.timestamp())

    def _hold(self, task_id, started_at_s, running_field):
        """Write `running` RUNNING_WRITE_HOLD_S after the run started (its child waits for
        started_at_s, at most a few milliseconds ahead)."""
        starts_in_s = max(0.0, started_at_s - self.now_s)
        self._held[task_id] = (self.now_m + starts_in_s + RUNNING_WRITE_HOLD_S, running_field)

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
            if self.fences is not None:
                self.fences.release(outcome.run_id)
            if not entry.writing:
                back = {k: v for k, v in entry.doc.items() if k != "running"}
                self._write(entry, {**back, "status": "scheduled"}, "unstart")
            return
        # A failed run is an error for the operator: `journalctl -u after@NAME JOB=<job> -p err`.
        # A run stopped by a user's cancel did what was asked: not a failure.
        doc = entry.doc   # decoded once (Entry keeps it deflated)
        job = doc.get("job", {}).get("name")
        if outcome.ok:
            log.info("job %s done", job, extra=about_doc(doc, outcome.run_id))
        elif entry.cancel:   # as outcome_fields: the run ends `canceled`
            log.info("job %s canceled (a user's cancel)", job, extra=about_doc(doc, outcome.run_id))
        else:
            log.error("job %s failed: %s", job, (outcome.error or {}).get("message"),
                      extra=about_doc(doc, outcome.run_id))
        self._count_run(outcome, doc, entry.cancel)   # metrics
        entry.phase = "finishing"
        entry.outcome = self._outcome_fields(entry, outcome)
        self.journal.add("outcome", outcome.run_id, task=task_id, update=entry.outcome)
        if not entry.writing:
            self._after_commit.append(lambda: self._write_outcome(entry, entry.doc))

    def _outcome_fields(self, entry, outcome) -> dict:
        """The document's fields after this run (afterd/outcome.py)."""
        fields, warning = outcomes.outcome_fields(entry.doc, outcome, now=self.now(), canceled=entry.cancel,
                                                  process=self.me.process,
                                                  history_limit=self.settings.history_limit,
                                                  output_limit=self.settings.output_limit)
        if warning:
            log.warning("task %s: %s", entry.id, warning, extra=about_doc(entry.doc, entry.run_id, in_text=True))
        return fields

    def _write_outcome(self, entry, base):
        """Put the pending outcome onto `base` (the current version) and write it."""
        if entry.taking_from and runs_of(base) >= int(entry.outcome.get("runs") or 0):
            # We were ending a gone process's run as interrupted, and the task now records
            # that run already (its process came back and wrote the real outcome, or our own
            # write landed though its answer was lost): keep that.
            log.info("task %s: the run of %s is recorded already; not writing it as interrupted",
                     base["_id"], entry.taking_from, extra=about_doc(base, entry.run_id, in_text=True))
            entry.outcome, entry.run_id, entry.taking_from, entry.phase = None, None, None, "new"
            self._decide(base)   # the task as it is now: ours to arm, or its holder's
            return
        owner = claims.owner_of(base)
        # Taken over while our run went on, on a cluster: the run was this occurrence's one
        # run (its fence was ours), so its outcome goes onto the task as its new owner holds it.
        keep_owner = self.cluster and owner not in (None, self.me.process, entry.taking_from)
        if owner not in (None, self.me.process, entry.taking_from) and not keep_owner:
            update = entry.outcome
            log.warning("task %s was taken over by %s while its run finished; outcome not written: %s",
                        base["_id"], claims.owner_of(base), update.get("error") or update.get("result"),
                        extra=about_doc(base, entry.run_id, in_text=True))
            self._forget(base["_id"], "taken over")
            return
        doc = outcomes.apply_outcome(base, entry.outcome, base["owner"] if keep_owner else self.me.owner_field())
        entry.phase = "finishing"
        run = entry.run_id or (base.get("running") or {}).get("run") or ""
        follow = outcomes.follow_up(base, entry.outcome, run, self.now())
        if follow is not None:
            # Queued before the outcome, so an outcome that is written (and journaled as
            # such) never leaves its follow-up behind; a replay writes it again: 409.
            self.writer.submit(Write(doc=follow, tag="follow-up"))
        self._write(entry, doc, f"outcome:{run}")

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
        now_m = self.now_m
        if not force and not self.metrics.due(now_m):
            return
        self.metrics.set_state(now_s=self.now_s, now_m=now_m, scheduled=len(self.timers),
                               running=self.runner.running(), held=len(self.entries),
                               next_due_s=self.timers.next_deadline(), lease_until_m=self.lease_until_s,
                               journal_pending=self.journal.pending_writes)
        self.metrics.write(now_m)


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


def _utc(epoch_s):
    return datetime.fromtimestamp(epoch_s, timezone.utc)
