"""decide.py's rule as a table: (document, what the loop holds) -> the action. Pure."""

import pytest

from afterd import decide as d
from afterd.decide import Held, decide

ME, PEER = "manobi:host-a:0", "manobi:host-b:0"


def doc(rev="3-aaa", status="scheduled", owner=ME, **fields):
    return {"_id": "t1", "_rev": rev, "worker": "manobi", "date": "2999-01-01T00:00:00Z", "status": status,
            "job": {"name": "hello", "arguments": []},
            **({"owner": {"process": owner, "host": "h", "pid": 1}} if owner else {}), **fields}


ARMED = Held("2-aaa", "armed")
RUNNING = Held("2-aaa", "running")
FINISHING = Held("2-aaa", "finishing")

CASES = [
    # news or not
    ("echo of the version held", doc(rev="2-aaa"), ARMED, d.IGNORE),
    ("older version", doc(rev="1-zzz", owner=PEER), ARMED, d.IGNORE),
    ("same generation, other branch, other owner", doc(rev="2-fff", owner=PEER), ARMED, d.FORGET),
    ("late echo of a task let go", doc(rev="2-aaa"), None, d.IGNORE),   # forgotten_gen=2 below
    ("our write in flight", doc(rev="3-bbb"), Held("2-aaa", "armed", writing=True), d.LATER),
    # still ours to act on?
    ("deleted", {"_id": "t1", "_rev": "3-x", "_deleted": True}, ARMED, d.FORGET),
    ("moved to another worker", doc(worker="other"), ARMED, d.FORGET),
    ("unknown status", doc(status="sometime"), None, d.REFUSE),
    ("a peer's task we do not hold", doc(owner=PEER), None, d.IGNORE),
    ("taken over by a peer", doc(owner=PEER), ARMED, d.FORGET),
    # what its status asks
    ("new task", doc(status="waiting", owner=None), None, d.CLAIM),
    ("rescheduled", doc(status="reschedule"), ARMED, d.CLAIM),
    ("scheduled, ours", doc(), None, d.ARM),
    ("scheduled, nobody's", doc(owner=None), None, d.CLAIM),
    ("running, ours, not here", doc(status="running"), None, d.RECOVER),
    ("cancel", doc(status="cancel"), ARMED, d.CANCEL),
    ("cancel during our run", doc(status="cancel"), RUNNING, d.CANCEL_RUN),
    ("cancel while we ask for the run's fence", doc(status="cancel"), Held("2-aaa", "fencing"), d.CANCEL_RUN),
    ("cancel once the run is over", doc(status="cancel"), FINISHING, d.KEEP),
    ("pause", doc(status="pause"), ARMED, d.PAUSE),
    ("pause during our run: it finishes", doc(status="pause"), RUNNING, d.KEEP),
    ("paused", doc(status="paused"), None, d.HOLD),
    ("resume", doc(status="resume"), Held("2-aaa", "held"), d.CLAIM),
    ("run now", doc(status="run"), ARMED, d.CLAIM),
    ("done elsewhere", doc(status="done"), ARMED, d.FORGET),
    ("done while our outcome is pending", doc(status="done"), FINISHING, d.IGNORE),
    ("err from old documents is error", doc(status="err"), None, d.FORGET),
]


@pytest.mark.parametrize("why, document, held, expected", CASES, ids=[c[0] for c in CASES])
def test_decide(why, document, held, expected):
    forgotten = 2 if why.startswith("late echo") else 0
    action = decide(document, held, me=ME, worker="manobi", forgotten_gen=forgotten)
    assert action.kind == expected, action


def test_the_claim_flags():
    assert decide(doc(status="waiting", owner=None), None, me=ME, worker="manobi").reset_anchor
    assert not decide(doc(status="resume"), None, me=ME, worker="manobi").reset_anchor
    assert decide(doc(status="run"), None, me=ME, worker="manobi").run_now
    assert decide(doc(owner=PEER, _deleted=False), ARMED, me=ME, worker="manobi").cancel_run


@pytest.mark.parametrize("rev, gen", [("7-abc", 7), (None, 0), ("x-y", 0), ("12-", 12)])
def test_rev_gen(rev, gen):
    assert d.rev_gen(rev) == gen
