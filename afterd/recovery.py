"""Runs whose process is gone: a dead peer's tasks (takeover) and our predecessor's.

A mixin of Worker (worker.py), split out by concern. What to do with each task is
claims.takeover's decision (pure); this applies it: claim, write the outcome the dead
process journaled, or end the run as interrupted (retrying it if the task allows).
"""

import logging

from afterd import claims
from afterd import outcome as outcomes
from afterd.decide import rev_gen
from afterd.entry import Entry
from afterd.logs import about_doc
from afterd.task import TaskError, crash_retries, format_date, normalize_status, parse_date

log = logging.getLogger("after.worker")


class Recovering:
    def _take_over(self, beat, process, tasks, runs):
        """Tasks of a peer whose lease ended (or, on this host, that provably died)."""
        now = self.now()
        for doc in tasks:
            if claims.owner_of(doc) != process or doc.get("worker") != self.name:
                continue
            try:
                status = normalize_status(doc.get("status"))
                date = parse_date(doc.get("date"))
            except TaskError as e:
                self._refuse(doc, e)
                continue
            if runs is None and claims.rendezvous(doc["_id"], self._view or (self.me.process,)) != self.me.process:
                continue   # another live process's share: it takes this one over (a dead peer
                           # on our own host is settled here, from its journal, by any of us)
            run = (doc.get("running") or {}).get("run") or claims.run_id(
                doc["_id"], format_date(date), doc.get("attempts", 0))
            rec = (runs or {}).get(run)
            state = rec.state if rec is not None else None
            if runs is not None and rec is None:
                # Its journal is readable and never mentions this run: it never started,
                # unless the document says running (then the journal was lost).
                state = "started" if status == "running" else "intent"
            decision = claims.takeover(status, date, beat, state, now)
            if self.cluster and decision == claims.INTERRUPTED and status == "scheduled":
                # Whether it may have started is known exactly here: a run starts only behind
                # its fence, so we ask for that fence; a fence its owner made first says it
                # may have started (_recheck_fence ends it as interrupted), none says it never did.
                decision = claims.CLAIM
            held = self.entries.get(doc["_id"])
            if held is not None and (held.writing or rev_gen(held.rev) >= rev_gen(doc.get("_rev"))):
                continue   # we hold it, at this version or newer: the scan read a copy behind
            entry = held or self.entries.setdefault(doc["_id"], Entry(doc=doc))
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

    def _recover_running(self, entry):
        """Ours and `running`, but not in this process: our predecessor in this slot ran it."""
        run = (entry.doc.get("running") or {}).get("run")
        prior = self._predecessor.pop(run, None) if run else None
        if prior is not None and prior.state == "intent":
            self._claim(entry, reset_anchor=False)   # journaled, never started: run it
            return
        self._settle_predecessor(entry, run, prior)

    def _settle_predecessor(self, entry, run, prior):
        if prior is not None and prior.outcome is None and prior.result is not None:
            # The job finished but the worker died before it heard: the child's own record.
            prior.outcome = self._outcome_fields(entry, outcomes.from_journal(run, prior.result, self.now_s))
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
        now = self.now()
        self.metrics.run_ended("interrupted", job=about_doc(doc).get("job"))   # metrics
        if attempts < retry:
            log.warning("task %s: run %s interrupted (%s); retrying (%d of %d)", doc["_id"], run, how,
                        attempts + 1, retry, extra=about_doc(doc, run))
            # The cut attempt goes into the history like any other (design §3).
            cut, _ = outcomes.outcome_fields(doc, outcomes.interrupted(run, how, now), now=now,
                                             process=entry.taking_from or self.me.process,
                                             history_limit=self.settings.history_limit)
            update = {**doc, "status": "scheduled", "attempts": attempts + 1,
                      "owner": self.me.owner_field(), "history": cut["history"]}
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

    def _close_predecessor_runs(self, active: set):
        """At start-up: runs our predecessor in this slot left open whose task is no
        longer active moved on; nothing is left to write for them."""
        for run_id, rec in self._predecessor.items():
            if rec.state != "written" and rec.task not in active:
                self.journal.add("written", run_id)
        self._predecessor = {k: v for k, v in self._predecessor.items() if v.task in active}
