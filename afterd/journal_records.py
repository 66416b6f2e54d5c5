"""The journal's record formats: one JSON object a line (journal.py writes and replays them).

Kept apart from journal.py, and importing only json, because a run's child writes
its own `start` and `result` records into the worker's journal (zygote.py): the
zygote keeps its imports few on purpose (every module it loads is memory each fork
copies), and journal.py brings dataclasses (and with it inspect), which it does not.

Records, by kind ("t"):
  intent   {"run", "task", "date"}          the worker will hand the run to the zygote
  start    {"run", "at"}                    the child, just before run(task); at: epoch s
  result   {"run", "task", "outcome"}       the child, once run(task) ended
  outcome  {"run", "task", "update"}        the worker's document update for the run
  written  {"run"}                          CouchDB has that update
Field names are the file format: a journal left by an older process is replayed by a
newer one, so they do not change.
"""

import json

INTENT, START, RESULT, OUTCOME, WRITTEN = "intent", "start", "result", "outcome", "written"


def record(kind: str, run_id: str, **fields) -> dict:
    return {"t": kind, "run": run_id, **fields}


# Built once: json.dumps with options builds an encoder per call, and the zygote's
# children encode two records per run (bench: part of 5.84 -> 5.64 ms CPU per run).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def encode(rec: dict) -> bytes:
    """One line of the journal: compact JSON and a newline, written with one write(2)."""
    return _ENCODER.encode(rec).encode() + b"\n"


def start_record(run_id: str, began_at_epoch_s: float) -> dict:
    """The child's `start`: run(task) is about to be called, so the run must never run again."""
    return record(START, run_id, at=began_at_epoch_s)


def result_record(run_id: str, task_id, outcome: dict, *, began_at_epoch_s: float,
                  finished_at_epoch_s: float, ready_at_epoch_s: float) -> dict:
    """The child's `result`: how run(task) ended, with its times, for replay to write.

    queued_ms is how long the run waited for a slot after it could have started."""
    return record(RESULT, run_id, task=task_id, outcome={
        **outcome, "started_at_s": began_at_epoch_s, "finished_at_s": finished_at_epoch_s,
        "queued_ms": max(0.0, began_at_epoch_s - ready_at_epoch_s) * 1000})
