"""An HTTP proxy that makes a single CouchDB-API server answer as one node of a cluster does
when it loses a race or reads from a stale copy.

CI cannot run a CouchDB cluster. What after must survive there is measured
(../shared/notes/couchdb-real-server.md, issue "exactly once on a cluster"):
- two conditional writes on one `_rev`: one is answered 201, the other 202 (it reached
  one copy of three), and once the copies sync the document has both as leaves;
- a write that reached too few copies for any other reason (a node away) is answered
  202 even with no rival;
- `_all_docs`, `_changes` and views are served from one copy, which can be behind.

So, between a worker and the server:
- a task write in `_bulk_docs` that the server refused with 409 is answered 202
  instead, and its revision is planted as a conflicting leaf (`new_edits: false`), as
  the copy that took it would replicate it (`plant_p`, default always);
- a task write that succeeded is marked accepted (202) with probability `accept_p`;
- with `stale_leases`, heartbeat documents read through `_all_docs` show a lease that
  ended long ago, as a copy that missed the renewals would.
"""

import contextlib
import json
import random
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import requests

HEARTBEAT_PREFIX = "after:process:"
CLUSTER = {"q": 2, "n": 3, "w": 2, "r": 2}   # CouchDB 3's defaults
LONG_AGO = "2000-01-01T00:00:00Z"


class QuorumProxy:
    def __init__(self, upstream: str, *, plant_p: float = 1.0, accept_p: float = 0.0, seed: int = 0):
        self.upstream = upstream.rstrip("/")
        self.plant_p = plant_p
        self.accept_p = accept_p
        self.stale_leases = False
        self.rng = random.Random(seed)
        self.planted = 0      # refused writes answered 202, their revision planted
        self.accepted = 0     # successful writes answered 202
        self.fence_accept_p = 0.0   # a run's fence created, and answered 202 (fences.py)
        self.fences_accepted = 0
        self.stale_reads = 0  # heartbeat reads answered with an ended lease
        # A gate the test can close: task writes wait at it (ids noted in `held`) until it
        # opens, so every worker reads every task before any claim lands.
        self.gate: threading.Event | None = None
        self.held: set = set()
        self.planted_revs: list[str] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        # pouchdb-server (LevelDB adapter) can leave a leaf without its body when two writes
        # of one conflicted document overlap (a merge on a leaf and a DELETE of that same
        # leaf), and then crashes in allDocsInner ("Cannot set properties of undefined
        # (setting '_rev')") on every _all_docs or _find that reads that document (seen at
        # ~300 tasks raced by three processes). CouchDB answers one of the two with 409. So
        # writes through these proxies run one at a time, and whole-document reads never
        # overlap them. A test-server bug (docs/couchdb-differences.md), not a cluster's.
        self._exclusion = _EXCLUSION
        self._server = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, payload = proxy.handle(self.command, self.path, body, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass   # the client gave up (a longpoll past its deadline)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- relaying ----------------------------------------------------------------------

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def handle(self, method, path, body, headers):
        fwd = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept", "authorization",
                                                                 "cookie")}
        url = urlsplit(path)
        side = ("read" if url.path.endswith(("/_all_docs", "/_find"))
                else "write" if method in ("PUT", "DELETE") or url.path.endswith("/_bulk_docs") else None)
        if self.gate is not None and method == "POST" and url.path.endswith("/_bulk_docs") and body:
            with self._lock:
                self.held.update(d.get("_id") for d in json.loads(body).get("docs", []) if is_task(d))
            self.gate.wait(8)   # below the worker's request timeout (10 s)
        try:
            with self._exclusion.side(side):
                resp = self._session().request(method, self.upstream + path, data=body, headers=fwd,
                                               timeout=(5, 120))
        except requests.RequestException as e:
            return 502, json.dumps({"error": "proxy", "reason": str(e)}).encode()
        status, payload = resp.status_code, resp.content
        if method == "POST" and url.path.endswith("/_bulk_docs") and status == 201 and body:
            status, payload = self._bulk(url.path.rsplit("/", 1)[0], json.loads(body), resp.json())
        elif method == "PUT" and status == 201 and unquote(url.path).rsplit("/", 1)[-1].startswith("after:run:") \
                and self._chance(self.fence_accept_p):
            status = 202
            with self._lock:
                self.fences_accepted += 1
        elif method == "GET" and url.path.endswith("/_all_docs") and self.stale_leases and status == 200:
            payload = self._stale(parse_qs(url.query), resp.json())
        elif method == "GET" and url.path.count("/") == 1 and len(url.path) > 1 and status == 200:
            # GET /db: a cluster says how many copies it keeps and its quorums.
            payload = json.dumps({**resp.json(), "cluster": CLUSTER}).encode()
        return status, payload

    def _bulk(self, db_path, request, results):
        if request.get("new_edits") is False:
            return 201, json.dumps(results).encode()
        docs = {d.get("_id"): d for d in request.get("docs", [])}
        status = 201
        for res in results:
            doc = docs.get(res.get("id"))
            if not is_task(doc):
                continue
            if res.get("error") == "conflict" and doc.get("_rev") and self._chance(self.plant_p):
                rev = self._plant(db_path, doc)
                if rev:
                    res.clear()
                    res.update({"ok": True, "id": doc["_id"], "rev": rev, "accepted": True})
                    status = 202
                    with self._lock:
                        self.planted += 1
                        self.planted_revs.append(f"{doc['_id']} {rev} on {doc['_rev']}")
            elif "rev" in res and "error" not in res and self._chance(self.accept_p):
                res["accepted"] = True
                status = 202
                with self._lock:
                    self.accepted += 1
        return status, json.dumps(results).encode()

    def _plant(self, db_path, doc) -> str | None:
        """Write the refused document as a sibling of the revision it was based on, as the
        one copy that took it would replicate it to the others. Only for a lost race: the
        current revision is a live child of that same base (a write on a revision that was
        stale for longer is refused by every copy of a cluster too, with 409)."""
        gen, _, digest = doc["_rev"].partition("-")
        current = self._session().get(f"{self.upstream}{db_path}/{doc['_id']}", params={"revs": "true"},
                                      timeout=10)
        if current.status_code != 200:
            return None
        history = current.json().get("_revisions") or {}
        if history.get("start") != int(gen) + 1 or history.get("ids", [None, None])[1:2] != [digest]:
            return None
        base = self._session().get(f"{self.upstream}{db_path}/{doc['_id']}",
                                   params={"rev": doc["_rev"], "revs": "true"}, timeout=10)
        if base.status_code != 200:
            return None
        history = base.json()["_revisions"]
        digest = uuid.uuid4().hex
        gen = history["start"] + 1
        leaf = {**doc, "_rev": f"{gen}-{digest}", "_revisions": {"start": gen, "ids": [digest, *history["ids"]]}}
        with self._exclusion.side("write"):
            written = self._session().post(f"{self.upstream}{db_path}/_bulk_docs",
                                           json={"docs": [leaf], "new_edits": False}, timeout=10)
        return leaf["_rev"] if written.status_code in (201, 202) else None

    def _stale(self, query, answer):
        for row in answer.get("rows", []):
            doc = row.get("doc")
            if isinstance(doc, dict) and str(doc.get("_id", "")).startswith(HEARTBEAT_PREFIX):
                doc["expires_at"] = LONG_AGO
                with self._lock:
                    self.stale_reads += 1
        return json.dumps(answer).encode()

    def _chance(self, p: float) -> bool:
        with self._lock:
            return self.rng.random() < p


class _Exclusion(threading.Condition):
    """Readers of whole documents share with each other; a write (a plant included) runs
    alone. Waiting readers hold back new writes, so a stream of writes cannot starve them."""
    readers = 0
    writing = False
    waiting_readers = 0

    @contextlib.contextmanager
    def side(self, which):
        if which is None:
            yield
            return
        reader = which == "read"
        with self:
            self.waiting_readers += reader
            while self.writing or (not reader and (self.readers or self.waiting_readers)):
                self.wait()
            self.waiting_readers -= reader
            if reader:
                self.readers += 1
            else:
                self.writing = True
        try:
            yield
        finally:
            with self:
                if reader:
                    self.readers -= 1
                else:
                    self.writing = False
                self.notify_all()


_EXCLUSION = _Exclusion()


def is_task(doc) -> bool:
    return (isinstance(doc, dict) and "worker" in doc and not doc.get("_deleted")
            and not str(doc.get("_id", "")).startswith(("_design/", HEARTBEAT_PREFIX)))
