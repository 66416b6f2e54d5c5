"""CouchDB goes away for 30 s while tasks come due: nothing lost, nothing doubled, and the
worker says what is happening through sd_notify, as systemd would show it.

The worker runs with NOTIFY_SOCKET pointing at a datagram socket this test binds, so the
READY=1 / STATUS= / STOPPING=1 messages are the real ones `systemctl status` would show.
"""

import socket
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from afterd.couch import Couch
from helpers import wait_for
from test_engine import post_all, record_task, statuses, wait_final
from workers import read_runs, starts_per_occurrence

OUTAGE_S = 30
EXIT_UNAVAILABLE = 69   # what `after start` exits with when CouchDB is unreachable at start
RESTART_SEC_S = 5       # systemd/after@.service: Restart=on-failure, RestartSec=5


class NotifyListener:
    """A NOTIFY_SOCKET: collects every sd_notify message sent to it."""

    def __init__(self):
        # AF_UNIX paths are limited to 108 bytes: a short folder, not pytest's tmp_path.
        self.dir = tempfile.mkdtemp(prefix="after-notify-")
        self.path = str(Path(self.dir) / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.extend(data.decode(errors="replace").split("\n"))

    def statuses(self):
        return [m[len("STATUS="):] for m in self.messages if m.startswith("STATUS=")]

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()
        Path(self.path).unlink(missing_ok=True)
        Path(self.dir).rmdir()


@pytest.fixture
def notify():
    listener = NotifyListener()
    yield listener
    listener.close()


def start_like_systemd(w, timeout_s=90):
    """Start until READY, restarting after RestartSec on failure (as Restart=on-failure does)."""
    deadline = time.monotonic() + timeout_s
    exits = []
    while True:
        try:
            w.start(timeout_s=30)
            return exits
        except AssertionError:
            if w.proc.poll() is None:
                raise
            exits.append(w.proc.returncode)
            assert time.monotonic() < deadline, f"no start within {timeout_s}s: exits {exits}"
            time.sleep(RESTART_SEC_S)


@pytest.mark.parametrize("kill_mid_outage", [False, True], ids=["no-kill", "kill-9-mid-outage"])
def test_30s_outage_during_a_load_loses_nothing_and_says_so(private_couch_server, spawn, records, notify,
                                                             kill_mid_outage):
    db = Couch(private_couch_server.url, "tasks")
    db.ensure_database()
    w = spawn("manobi", private_couch_server.url, "tasks")
    w.env["NOTIFY_SOCKET"] = notify.path
    w.start()
    base = datetime.now(timezone.utc) + timedelta(seconds=4)
    docs = [record_task(records, base + timedelta(seconds=i * 0.5), args={"sleep_s": 0.3})
            for i in range(80)]   # due over 40 s: before, during and after the outage
    ids = post_all(db, docs)
    wait_for(lambda: set(statuses(db, ids).values()) <= {"scheduled", "running", "done"}, 15,
             "every task claimed")
    time.sleep(2)
    private_couch_server.stop()
    exits = []
    if kill_mid_outage:
        time.sleep(OUTAGE_S / 2)
        w.kill()
        w.start(wait_ready=False)          # comes back while CouchDB is still down
        time.sleep(OUTAGE_S / 2)
    else:
        time.sleep(OUTAGE_S)
    saw_unreachable = any("unreachable" in s for s in notify.statuses())
    private_couch_server.start()
    if kill_mid_outage:
        if w.proc.poll() is not None:
            exits.append(w.proc.returncode)
        exits += start_like_systemd(w) if not w.alive() else []
        if w.alive() and "ready:" not in w.log()[w._offset:]:
            wait_for(w._ready, 60, "the restarted worker to be ready")
    began = time.monotonic()
    final = wait_final(db, ids, 120)
    recovery_s = time.monotonic() - began

    starts = starts_per_occurrence(records)
    ended = {(r["task"], r["date"]) for r in read_runs(records) if r["event"] == "end"}
    cut = {k for k in starts if k not in ended}
    print(f"\noutage {OUTAGE_S}s ({'kill -9 mid-outage' if kill_mid_outage else 'no kill'}): "
          f"{len(ids)} tasks, {sum(starts.values())} runs, {len(cut)} cut, "
          f"{sum(1 for n in starts.values() if n > 1)} duplicates, exits while down {exits}, "
          f"all stored {recovery_s:.1f}s after CouchDB came back")
    assert max(starts.values()) == 1, "an occurrence ran twice"
    assert saw_unreachable, f"no STATUS said CouchDB was unreachable: {notify.statuses()}"
    assert "STOPPING=1" not in notify.messages
    assert w.alive()
    if kill_mid_outage:
        assert set(exits) <= {EXIT_UNAVAILABLE}, exits
        assert notify.messages.count("READY=1") == w.starts - len(exits)
        for task_id, doc in final.items():
            if (task_id, doc["date"]) in cut:
                assert doc["status"] == "error" and doc["error"]["type"] == "Interrupted", doc
            else:
                assert doc["status"] == "done", doc
    else:
        assert w.starts == 1 and notify.messages.count("READY=1") == 1
        assert {d["status"] for d in final.values()} == {"done"}
        assert sorted(starts.values()) == [1] * len(ids) and not cut
