"""`make run`: worker `manobi` on the example jobs, and a demo task posted over HTTP.

Uses AFTER_COUCHDB_URL when set; otherwise starts a local pouchdb-server (data under
.run/couchdb in the checkout) and stops it with the worker. Ctrl-C stops both.
DEMO_SECONDS=N stops by itself after N seconds (for scripted checks).
Exit status: 0 when the demo task ran and is done, 1 otherwise.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the test server's starter is shared with the tests

from afterd.config import mask_url  # noqa: E402
from afterd.couch import Couch, CouchError  # noqa: E402
from couchdb_server import PouchServer, free_port  # noqa: E402

EXIT_OK = 0
EXIT_FAILED = 1
WORKER = "manobi"
DATABASE = "tasks"
RUN_DIR = ROOT / ".run"
DUE_IN_S = 3.0
POLL_S = 0.1
STOP_GRACE_S = 10.0


def say(text: str) -> None:
    print(f"[demo {datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


def start_server() -> PouchServer:
    # 5984 when free, so the README's curl lines work as printed; any free port otherwise.
    port = 5984 if port_free(5984) else free_port()
    server = PouchServer(RUN_DIR / "couchdb", port=port)
    server.start()
    say(f"started pouchdb-server at {server.url} (data in .run/couchdb, log .run/couchdb/server.log)")
    return server


def port_free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        # As the server will: a port left in TIME_WAIT by the last run is free to listen on.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start_worker(couchdb_url: str) -> subprocess.Popen:
    after = Path(sys.executable).parent / "after"
    if not after.exists():
        raise SystemExit(f"demo: {after} is missing: run `make deps` first")
    env = {**os.environ, "AFTER_COUCHDB_URL": couchdb_url, "AFTER_DATABASE": DATABASE,
           "AFTER_JOBS_DIR": str(ROOT / "jobs"), "AFTER_STATE_DIR": str(RUN_DIR / "state")}
    say(f"starting worker: after start {WORKER}  (jobs from jobs/, state in .run/state)")
    # A session of its own: Ctrl-C reaches only the demo, which then stops the worker
    # with SIGTERM as systemd would, and waits for it.
    return subprocess.Popen([str(after), "start", WORKER], env=env, start_new_session=True)


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    say("stopping the worker (SIGTERM)")
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        say(f"the worker did not stop within {STOP_GRACE_S:g}s: killing it")
        worker.kill()
        worker.wait()


def post_task(couchdb_url: str) -> str:
    """POST the demo task with plain HTTP, the way a user's program would."""
    date = datetime.now(timezone.utc) + timedelta(seconds=DUE_IN_S)
    task = {"worker": WORKER, "date": date.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "status": "waiting", "job": {"name": "hello", "arguments": ["make run"]}}
    say(f"POST {mask_url(couchdb_url)}/{DATABASE}  {json.dumps(task)}")
    answer = requests.post(f"{couchdb_url.rstrip('/')}/{DATABASE}", json=task, timeout=10)
    if answer.status_code >= 300:
        raise CouchError(f"CouchDB refused the demo task: {answer.status_code} {answer.text.strip()[:200]}")
    return answer.json()["id"]


def watch(couch: Couch, task_id: str, worker: subprocess.Popen, deadline: float | None) -> bool:
    """Print the task's status as it changes; True once it is done."""
    last = None
    while deadline is None or time.monotonic() < deadline:
        doc = couch.get(task_id)
        status = doc.get("status")
        if status != last:
            last = status
            say(f"task {task_id}: {describe(doc)}")
            if status == "done":
                return True
            if status in ("error", "canceled"):
                return False
        if worker.poll() is not None:
            say(f"the worker exited with code {worker.returncode} before the task was done "
                "(its own message is above)")
            return False
        time.sleep(POLL_S)
    return False


def describe(doc: dict) -> str:
    status = doc.get("status")
    if status in ("waiting", "scheduled"):
        return f"{status} (date {doc.get('date')})"
    if status == "done":
        return f"done, result {json.dumps(doc.get('result'))} (finished {doc.get('finished_at')})"
    if status == "error":
        return f"error: {(doc.get('error') or {}).get('message')}"
    return str(status)


def main() -> int:
    # Ctrl-C even when started with SIGINT ignored (a background job of a script), and
    # SIGTERM alike: both end in the same clean stop of the worker and the server.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo_seconds = os.environ.get("DEMO_SECONDS")
    deadline = time.monotonic() + float(demo_seconds) if demo_seconds else None
    server = worker = None
    done = False
    try:
        couchdb_url = os.environ.get("AFTER_COUCHDB_URL")
        if couchdb_url:
            say(f"using CouchDB at {mask_url(couchdb_url)} (AFTER_COUCHDB_URL)")
        else:
            server = start_server()
            couchdb_url = server.url
        couch = Couch(couchdb_url, DATABASE)
        created = couch.ensure_database()
        say(f"database '{DATABASE}' {'created' if created else 'exists'}")
        installed = couch.ensure_design()
        say(f"design document _design/after {'installed' if installed else 'is up to date'}")
        say(f"console: {couch.base_url}/{DATABASE}/_design/after/console.html")

        worker = start_worker(couchdb_url)
        task_id = post_task(couchdb_url)
        done = watch(couch, task_id, worker, deadline)
        if done:
            say(f"it works. Watch it again: curl {mask_url(couchdb_url)}/{DATABASE}/{task_id}")
        if worker.poll() is None:
            say("the worker keeps running: POST more tasks (see README.md); Ctrl-C stops it"
                + (f"; stopping by itself after DEMO_SECONDS={demo_seconds}" if deadline else ""))
            while worker.poll() is None and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.2)
    except KeyboardInterrupt:
        say("interrupted")
    except (CouchError, requests.RequestException, RuntimeError) as e:
        say(f"failed: {e}")
        done = False
    finally:
        if worker is not None:
            stop_worker(worker)
        if server is not None:
            server.stop()
            say("stopped pouchdb-server")
    if worker is not None and worker.returncode not in (0, -signal.SIGTERM) and not done:
        say(f"the worker ended with code {worker.returncode}")
    return EXIT_OK if done else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
