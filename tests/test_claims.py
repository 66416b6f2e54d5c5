"""Takeover rules (pure): what a live process may do with a dead owner's task."""

from datetime import datetime, timedelta, timezone

import pytest

from afterd import claims
from afterd.claims import CLAIM, INTERRUPTED, WRITE_OUTCOME, Identity, heartbeat_doc, lease_expired, takeover

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ME = Identity("manobi", "host-a", 0, 123)


def beat(expires_in_s, stopped=False):
    return heartbeat_doc(ME, NOW - timedelta(seconds=60) + timedelta(seconds=expires_in_s), 60, stopped)


def test_lease_holds_until_expiry_plus_margin():
    assert not lease_expired(beat(0), NOW, skew_margin_s=5)          # expired just now: wait the margin
    assert lease_expired(beat(-6), NOW, skew_margin_s=5)
    assert lease_expired(None, NOW, 5)                                # no heartbeat at all
    assert lease_expired(beat(30, stopped=True), NOW, 5)              # it said it stopped


@pytest.mark.parametrize("status, date_offset_s, journal, expected", [
    ("scheduled", +10, None, CLAIM),           # not due yet: nobody can have started it
    ("scheduled", -10, None, INTERRUPTED),     # due while the owner's lease held: fate unknown
    ("scheduled", -10, "intent", CLAIM),       # its journal says it never started
    ("scheduled", -10, "started", INTERRUPTED),
    ("running", -10, None, INTERRUPTED),
    ("running", -10, "intent", CLAIM),
    ("running", -10, "outcome", WRITE_OUTCOME),
    ("reschedule", -10, None, CLAIM),
    ("cancel", -10, None, CLAIM),
])
def test_takeover_decisions(status, date_offset_s, journal, expected):
    heartbeat = beat(0)   # the lease ended now; the task's date is relative to NOW
    assert takeover(status, NOW + timedelta(seconds=date_offset_s), heartbeat, journal, NOW) == expected


def test_due_after_the_lease_ended_cannot_have_started():
    heartbeat = beat(-30)   # the lease ended 30 s ago: the owner started nothing after that
    assert takeover("scheduled", NOW - timedelta(seconds=10), heartbeat, None, NOW) == CLAIM
    assert takeover("scheduled", NOW - timedelta(seconds=40), heartbeat, None, NOW) == INTERRUPTED


def test_a_cleanly_stopped_owner_started_nothing_it_did_not_finish():
    assert takeover("scheduled", NOW - timedelta(seconds=10), beat(0, stopped=True), None, NOW) == CLAIM


def test_identity_names_its_heartbeat():
    assert ME.process == "manobi:host-a:0"
    assert ME.heartbeat_id == claims.HEARTBEAT_PREFIX + "manobi:host-a:0"
    assert ME.owner_field() == {"process": "manobi:host-a:0", "host": "host-a", "pid": 123}
