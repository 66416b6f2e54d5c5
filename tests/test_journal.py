"""The on-disk journal: replay, slots, torn lines."""

import json
import os

from afterd import journal


def lines(*records):
    return [json.dumps(r).encode() for r in records]


def test_replay_folds_each_run_to_its_state():
    runs = journal.replay_lines(lines(
        {"t": "intent", "run": "a", "task": "A"},
        {"t": "intent", "run": "b", "task": "B"}, {"t": "start", "run": "b", "at": 1.0},
        {"t": "intent", "run": "c", "task": "C"}, {"t": "start", "run": "c", "at": 1.0},
        {"t": "result", "run": "c", "outcome": {"ok": True, "result": 1}},
        {"t": "intent", "run": "d", "task": "D"}, {"t": "outcome", "run": "d", "update": {"status": "done"}},
        {"t": "written", "run": "d"},
    ) + [b'{"t": "start", "run": "a", "at"'])   # a torn last line: skipped, not fatal
    assert {k: v.state for k, v in runs.items()} == {"a": "intent", "b": "started", "c": "outcome", "d": "written"}
    assert runs["c"].result == {"ok": True, "result": 1}


def test_slots_are_exclusive_and_a_restart_takes_its_predecessors_journal(tmp_path):
    slot, first, old = journal.open_slot(tmp_path)
    assert (slot, old) == (0, {})
    first.add("intent", "run-1", task="T")
    first.commit()
    slot2, second, _ = journal.open_slot(tmp_path)     # the first is alive: next slot
    assert slot2 == 1
    assert journal.read_if_dead(tmp_path, 0) is None   # held: provably alive
    os.close(first._fd)                                 # the process dies (no clean close)
    runs = journal.read_if_dead(tmp_path, 0)
    assert runs["run-1"].state == "intent"
    slot3, third, carried = journal.open_slot(tmp_path)
    assert slot3 == 0 and carried["run-1"].state == "intent"
    second.close()
    third.close(remove_if_clean=False)


def test_a_clean_close_removes_a_journal_with_nothing_open(tmp_path):
    _, j, _ = journal.open_slot(tmp_path)
    j.add("intent", "r", task="T")
    j.add("written", "r")
    j.close()
    assert not j.path.exists()


def test_the_childs_records_are_the_journals_own_format(tmp_path):
    """A run's child writes `start` and `result` into the worker's journal through
    journal_records (the zygote's lean import); replay reads them like any other."""
    from afterd import journal_records

    _, j, _ = journal.open_slot(tmp_path)
    j.add("intent", "r", task="T", date="2026-12-01T03:00:00Z")
    j.commit()
    with open(j.path, "ab") as child:                 # the child's own O_APPEND descriptor
        child.write(journal_records.encode(journal_records.start_record("r", 100.0)))
        child.write(journal_records.encode(journal_records.result_record(
            "r", "T", {"ok": True, "result": 7, "error": None},
            began_at_epoch_s=100.0, finished_at_epoch_s=100.5, ready_at_epoch_s=99.75)))
    os.close(j._fd)                                    # the worker dies before hearing of it
    runs = journal.read_if_dead(tmp_path, 0)
    assert runs["r"].state == "outcome" and runs["r"].task == "T"
    assert runs["r"].started_at_s == 100.0
    assert runs["r"].result == {"ok": True, "result": 7, "error": None, "started_at_s": 100.0,
                                "finished_at_s": 100.5, "queued_ms": 250.0}


def test_the_zygote_writes_records_without_importing_the_journal_module():
    """journal.py brings dataclasses (and inspect): the zygote, which every run's child is
    forked from, keeps to journal_records, which imports only json."""
    import subprocess
    import sys

    probe = ("import sys, afterd.zygote; "
             "print(sorted(m for m in ('afterd.journal', 'dataclasses', 'inspect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
