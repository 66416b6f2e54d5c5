"""afterd.conflicts: the deterministic resolution of a task's conflicting revisions (pure)."""

import itertools

import pytest

from afterd.conflicts import SUPERSEDED_MAX, resolve, rev_key

BASE = {"_id": "t1", "worker": "manobi", "date": "2026-01-01T00:00:00Z",
        "job": {"name": "bill", "arguments": [1]}, "note": "the user's own field"}


def owner(name):
    return {"process": f"manobi:{name}:0", "host": name, "pid": 1}


def leaf(rev, **fields):
    return {**BASE, "_rev": rev, **fields}


def claim(rev, who, **fields):
    return leaf(rev, **{"status": "scheduled", "owner": owner(who), "anchor": BASE["date"], "occurrence": 0,
                        **fields})


def running(rev, who, **fields):
    return claim(rev, who, status="running",
                 running={"run": f"t1@{BASE['date']}#0", "process": f"manobi:{who}:0"}, **fields)


def done(rev, who, runs=1, **fields):
    return claim(rev, who, **{"status": "done", "runs": runs, "result": {"by": who},
                              "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
                              **fields})


def edit(rev, status, who, **fields):
    """A user's edit, made from the document a worker wrote (so it keeps that owner)."""
    return claim(rev, who, status=status, **fields)


def process(doc):
    return (doc.get("owner") or {}).get("process")


def lost(resolution):
    """{rev: what was lost} from the merged document's superseded list."""
    return {e["rev"]: e["lost"] for e in resolution.merged.get("superseded", [])}


# (case, leaves, expected: status, owner host, {superseded rev: lost}, extra checks on merged)
CASES = [
    ("two claims at once: CouchDB's winner keeps it, the other claim is recorded",
     [claim("2-aaa", "host-a"), claim("2-bbb", "host-b")],
     "scheduled", "host-b", {"2-aaa": ["claim"]}, {}),
    ("a run under way beats a later claim, even a longer branch",
     [running("3-aaa", "host-a"), claim("4-bbb", "host-b")],
     "running", "host-a", {"4-bbb": ["claim"]}, {}),
    ("two runs under way: a duplicate, the losing run is visible",
     [running("3-aaa", "host-a"), running("3-bbb", "host-b")],
     "running", "host-b", {"3-aaa": ["claim", "run"]}, {}),
    ("an outcome beats a run under way, and the lost run is recorded",
     [done("4-aaa", "host-a"), running("5-bbb", "host-b")],
     "done", "host-a", {"5-bbb": ["claim", "run"]}, {"result": {"by": "host-a"}}),
    ("an outcome on a losing branch (by rev) is kept: the base is the one with the outcome",
     [done("4-aaa", "host-a"), claim("6-bbb", "host-b")],
     "done", "host-a", {"6-bbb": ["claim"]}, {"runs": 1}),
    ("two outcomes of one occurrence: one is the result, the other is kept in superseded",
     [done("4-aaa", "host-a"), done("4-bbb", "host-b")],
     "done", "host-b", {"4-aaa": ["claim", "outcome"]}, {"result": {"by": "host-b"}}),
    ("an error counts as an outcome; the old spelling err too",
     [claim("3-zzz", "host-b"), done("3-aaa", "host-a", status="err", result=None)],
     "err", "host-a", {"3-zzz": ["claim"]}, {}),
    ("a user's cancel applies to the running branch: its owner stops the run",
     [running("3-aaa", "host-a"), edit("3-bbb", "cancel", "host-a")],
     "cancel", "host-a", {}, {"running": running("3-aaa", "host-a")["running"]}),
    ("a user's reschedule applies over another owner's claim: new date and job, that owner",
     [claim("3-ccc", "host-b", anchor="2026-02-02T00:00:00Z"),
      edit("3-bbb", "reschedule", "host-a", date="2027-05-05T00:00:00Z", job={"name": "other"})],
     "reschedule", "host-b", {"3-bbb": ["claim"]},
     {"date": "2027-05-05T00:00:00Z", "job": {"name": "other"}, "anchor": "2026-02-02T00:00:00Z"}),
    ("a reschedule of a waiting task beats a claim by rev: nobody owns it, any worker claims it",
     [claim("2-aaa", "host-b"), leaf("2-bbb", status="reschedule", date="2027-05-05T00:00:00Z")],
     "reschedule", None, {"2-aaa": ["claim"]}, {"date": "2027-05-05T00:00:00Z"}),
    ("a user's edit replaces the user fields: one removed, one added",
     [claim("2-aaa", "host-a"), {k: v for k, v in edit("2-bbb", "cancel", "host-a", extra=1).items()
                                 if k != "note"}],
     "cancel", "host-a", {}, {"extra": 1, "note": None}),
    ("a cancel beats a reschedule, which is recorded",
     [running("3-aaa", "host-a"), edit("3-bbb", "reschedule", "host-a", date="2027-01-01"),
      edit("3-ccc", "cancel", "host-a")],
     "cancel", "host-a", {"3-bbb": ["edit"]}, {"date": BASE["date"]}),
    ("a cancel that came too late: the outcome stands and the edit is kept",
     [done("4-aaa", "host-a"), edit("3-bbb", "cancel", "host-a")],
     "done", "host-a", {"3-bbb": ["edit"]}, {}),
    ("an older outcome on a branch that fell behind is taken as the base's own history",
     [done("5-aaa", "host-a", runs=2, status="scheduled"), done("6-bbb", "host-b", runs=1, status="scheduled")],
     "scheduled", "host-a", {"6-bbb": ["claim"]}, {"runs": 2}),
    ("a repeat's recorded run stays under a reschedule made before it",
     [claim("5-aaa", "host-a", runs=3, date="2026-01-04T00:00:00Z", last_run={"status": "done"}),
      edit("4-bbb", "reschedule", "host-a", runs=2, date="2027-01-01T00:00:00Z")],
     "reschedule", "host-a", {}, {"runs": 3, "last_run": {"status": "done"}, "date": "2027-01-01T00:00:00Z"}),
]


@pytest.mark.parametrize("case, leaves, status, host, superseded, checks", CASES, ids=[c[0] for c in CASES])
def test_resolution_table(case, leaves, status, host, superseded, checks):
    res = resolve(leaves)
    assert res.merged["status"] == status
    assert process(res.merged) == (f"manobi:{host}:0" if host else None)
    assert lost(res) == superseded
    for field, value in checks.items():
        assert res.merged.get(field) == value, field
    winner = max(leaves, key=lambda d: rev_key(d["_rev"]))
    assert res.winner_rev == winner["_rev"]
    assert sorted(res.losers) == sorted(d["_rev"] for d in leaves if d is not winner)
    if res.doc is not None:
        assert res.doc["_rev"] == winner["_rev"] and res.doc["_id"] == "t1"
        assert "_conflicts" not in res.doc


@pytest.mark.parametrize("case, leaves", [(c[0], c[1]) for c in CASES], ids=[c[0] for c in CASES])
def test_the_same_answer_whatever_the_input_order(case, leaves):
    answers = {repr(resolve(list(order))) for order in itertools.permutations(leaves)}
    assert len(answers) == 1


def test_three_way_conflict_in_any_order():
    leaves = [claim("2-aaa", "host-a"), running("3-bbb", "host-b"), claim("3-ccc", "host-c"),
              edit("2-ddd", "cancel", "host-a")]
    answers = {repr(resolve(list(order))) for order in itertools.permutations(leaves)}
    assert len(answers) == 1
    res = resolve(leaves)
    assert res.merged["status"] == "cancel" and process(res.merged) == "manobi:host-b:0"
    assert lost(res) == {"2-aaa": ["claim"], "3-ccc": ["claim"], "2-ddd": ["claim"]}
    assert res.winner_rev == "3-ccc" and sorted(res.losers) == ["2-aaa", "2-ddd", "3-bbb"]


def test_the_winner_is_kept_as_it_stands_when_the_merge_is_the_winner():
    # Two workers wrote the same merge on two nodes: only the deletion is needed, so two
    # resolvers at once delete the same leaf instead of conflicting with each other again.
    merged = running("4-aaa", "host-a")
    res = resolve([merged, {**merged, "_rev": "4-bbb"}])
    assert res.doc is None and res.losers == ["4-aaa"] and res.winner_rev == "4-bbb"
    assert "_rev" not in res.merged


def test_resolving_a_resolution_changes_nothing():
    first = resolve([running("3-aaa", "host-a"), running("3-bbb", "host-b")])
    again = resolve([{**first.doc, "_rev": "4-ccc"}])
    assert again.doc is None and again.losers == [] and again.merged == first.merged


def test_generations_compare_as_numbers_not_strings():
    res = resolve([claim("10-aaa", "host-a"), claim("9-zzz", "host-b")])
    assert res.winner_rev == "10-aaa" and process(res.merged) == "manobi:host-a:0"


def test_superseded_entries_of_every_leaf_are_kept_once_and_bounded():
    old = [{"rev": f"1-{i:03d}", "lost": ["claim"], "status": "scheduled", "owner": "x", "date": None}
           for i in range(SUPERSEDED_MAX + 5)]
    a = claim("5-aaa", "host-a", superseded=old[:15])
    b = claim("5-bbb", "host-b", superseded=old[10:])
    res = resolve([a, b])
    revs = [e["rev"] for e in res.merged["superseded"]]
    assert len(revs) == SUPERSEDED_MAX == len(set(revs))
    assert revs[-1] == "5-aaa" and revs == sorted(revs, key=rev_key)


def test_the_metadata_of_a_read_is_never_written_back():
    a = {**claim("2-aaa", "host-a"), "_conflicts": ["2-bbb"], "_revisions": {"start": 2, "ids": ["aaa"]}}
    res = resolve([a, claim("2-bbb", "host-b")])
    assert not {"_conflicts", "_revisions"} & set(res.doc)


@pytest.mark.parametrize("leaves, message", [
    ([], "at least one"),
    ([claim("2-aaa", "host-a"), {**claim("2-bbb", "host-b"), "_id": "t2"}], "different documents"),
])
def test_bad_input_is_refused_plainly(leaves, message):
    with pytest.raises(ValueError, match=message):
        resolve(leaves)
