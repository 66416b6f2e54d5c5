"""The on-disk outcome journal: what a worker process started and how it ended.

CouchDB is the record users read, but it may be unreachable at the moment a run
starts or ends. Before a run is handed to the runner its intent is journaled;
when it starts and when it ends, that too; once CouchDB has the outcome, a
`written` record closes it. Records are JSON lines appended with one write(2)
each and fsync'd in groups (one fsync per loop turn, not per run).

Each process owns one journal file in the worker's state directory and holds an
exclusive flock on it while alive. A journal nobody holds belongs to a dead
process: the next process of the same worker on this host adopts it (replay),
which is how a kill -9 loses no outcome and runs nothing twice.

Replay says, for every run of the file:
  written             -> nothing to do
  outcome, unwritten  -> write the outcome
  start, no outcome   -> interrupted: the job may have had effects; do not rerun
  result              -> the child's own record of how run(task) ended: write that
  intent only         -> never started: it may run
"""

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

# Every record's format is in journal_records.py (importable by the zygote's children).
from afterd.journal_records import INTENT, OUTCOME, RESULT, START, WRITTEN, encode, record

PREFIX = "journal-"
COMPACT_BYTES = 1 << 20


@dataclass
class RunRecord:
    run: str
    task: str | None = None
    intent: dict | None = None
    started_at_s: float | None = None
    outcome: dict | None = None    # the document update the worker computed
    result: dict | None = None     # the run's raw outcome, as the child recorded it
    written: bool = False

    @property
    def state(self) -> str:
        if self.written:
            return "written"
        if self.outcome is not None or self.result is not None:
            return "outcome"
        if self.started_at_s is not None:
            return "started"
        return "intent"


def replay_lines(lines) -> dict[str, RunRecord]:
    """Fold journal lines into one RunRecord per run id (pure). Torn last lines are skipped."""
    runs: dict[str, RunRecord] = {}
    for line in lines:
        try:
            rec = json.loads(line)
            run_id = rec["run"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash mid-write
        entry = runs.setdefault(run_id, RunRecord(run=run_id))
        kind = rec.get("t")
        if kind == INTENT:
            entry.intent = rec
            entry.task = rec.get("task")
        elif kind == START:
            entry.started_at_s = rec.get("at")
        elif kind == OUTCOME:
            entry.outcome = rec.get("update")
            entry.task = entry.task or rec.get("task")
        elif kind == RESULT:
            entry.result = rec.get("outcome")
            entry.task = entry.task or rec.get("task")
        elif kind == WRITTEN:
            entry.written = True
    return runs


class Journal:
    """This process's journal file (locked while we live)."""

    def __init__(self, state_dir: Path, process_id: str):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{PREFIX}{process_id}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._buffer: list[bytes] = []
        self._open_runs: set[str] = set()
        self._unwritten: set[str] = set()   # runs with an outcome CouchDB does not have yet

    @property
    def pending_writes(self) -> int:
        """Outcomes journaled and not yet written to CouchDB (a metric)."""
        return len(self._unwritten)

    def add(self, kind: str, run_id: str, **fields):
        self._buffer.append(encode(record(kind, run_id, **fields)))
        if kind == INTENT:
            self._open_runs.add(run_id)
        elif kind == OUTCOME:
            self._unwritten.add(run_id)
        elif kind == WRITTEN:
            self._open_runs.discard(run_id)
            self._unwritten.discard(run_id)

    def commit(self):
        """Write what was added since the last commit, durably, in one go."""
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self._maybe_compact()

    def forget(self, run_id: str):
        """A run that never needs a record again (e.g. canceled before its intent mattered)."""
        self._open_runs.discard(run_id)
        self._unwritten.discard(run_id)

    def _maybe_compact(self):
        # Every run is closed: the file holds nothing a successor would need.
        if not self._open_runs and os.fstat(self._fd).st_size > COMPACT_BYTES:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)

    def take_over(self) -> dict[str, RunRecord]:
        """Replay what a predecessor in this slot left, and start the file afresh.

        The caller must carry every open run into this journal (add + commit)
        before the next compaction; until then the old lines stay in the file.
        """
        with open(self.path, "rb") as f:
            runs = replay_lines(f.read().splitlines())
        for run_id, rec in runs.items():
            if rec.state != "written":
                self._open_runs.add(run_id)
        return runs

    def close(self, remove_if_clean=True):
        if self._fd is None:
            return
        self.commit()
        if remove_if_clean and not self._open_runs:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def open_slot(state_dir: Path) -> tuple[int, "Journal", dict[str, RunRecord]]:
    """Lock the first free slot; return it, its journal, and what the predecessor left in it.

    The slot is this process's identity on the host. A worker restarted on the
    same host takes slot 0 again, and with it its predecessor's journal and its
    tasks: the owner field of every task stays valid, so a restart rewrites
    nothing in CouchDB. The flock lives as long as the process, so two live
    processes never share a slot, and a slot nobody holds is provably dead.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        try:
            journal = Journal(state_dir, str(slot))
        except BlockingIOError:
            slot += 1
            continue
        return slot, journal, journal.take_over()


def read_if_dead(state_dir: Path, slot: int) -> dict[str, RunRecord] | None:
    """The journal of slot `slot` if no live process holds it (provably gone), else None.

    No journal file proves nothing (the peer may keep its state elsewhere), so
    that is None too: the caller falls back on the lease.
    """
    path = Path(state_dir) / f"{PREFIX}{slot}.jsonl"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            return replay_lines(f.read().splitlines())
    finally:
        os.close(fd)
