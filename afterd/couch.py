"""CouchDB over one requests.Session: documents, bulk, find, views, one _changes request.

The narrow store interface the rest of after uses (docs/internals.md). Every error is
a typed CouchError whose message is one line a person can act on and never carries
the password. Only the API that Apache CouchDB 3 and pouchdb-server both implement is
used; docs/couchdb-differences.md says where they differ and how this client copes.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

from afterd import clock
# Credentials in a URL are shown masked everywhere; config.py, which reads the URL, owns the rule.
from afterd.config import mask_url

DESIGN_ID = "_design/after"
FIND_PAGE_SIZE = 1000
SCAN_PAGE_SIZE = 2000
# A scan page may have to read many non-matching documents first (a database of
# mostly finished tasks): its requests get this long, not the usual timeout.
SCAN_READ_TIMEOUT_S = 600.0
# A newline from the server every second keeps a quiet longpoll observable, so the
# client-side deadline and a cancel request are noticed within about a second.
CHANGES_HEARTBEAT_MS = 1000
FINAL_STATUSES = frozenset({400, 401, 403, 404})  # a retry cannot fix these


class CouchError(Exception):
    """One line, no password. `.status` is the HTTP status, None when there was no answer."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class NotFound(CouchError):
    pass


class Conflict(CouchError):
    pass


class Unauthorized(CouchError):
    pass


class Forbidden(CouchError):
    def __init__(self, message: str, reason: str, status: int | None = 403):
        super().__init__(message, status)
        self.reason = reason


class Unavailable(CouchError):
    """Transient: connection refused or reset, a timeout, a 5xx. Retrying may help."""


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """("http://user:pw@host:5984/" ) -> ("http://host:5984", "user", "pw")."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CouchError(f"not a CouchDB URL (want http://[user:password@]host:port): {mask_url(url)}")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port:
        netloc += f":{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base, user, password


def quote_doc_id(doc_id: str) -> str:
    # `_design/x` and `_local/x` keep their slash: both servers route on it.
    for prefix in ("_design/", "_local/"):
        if doc_id.startswith(prefix):
            return prefix + quote(doc_id[len(prefix):], safe="")
    return quote(doc_id, safe="")


class Couch:
    def __init__(self, url: str, database: str, timeout_s: float = 10.0):
        self.base_url, self.user, password = split_credentials(url)
        self.database = database
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if self.user is not None:
            self.session.auth = (self.user, password or "")
        self._settle_environment()
        self.session.headers.update({"Accept": "application/json"})
        self.safe_url = self.base_url
        if self.user is not None:
            scheme, rest = self.base_url.split("://", 1)
            self.safe_url = f"{scheme}://{quote(self.user, safe='')}:***@{rest}"
        self._password = password
        self._db_path = "/" + quote(database, safe="")
        self._indexes: set[tuple] = set()
        self._local_revs: dict[str, str] = {}

    def _settle_environment(self):
        """Read once what requests reads from the environment on every request (proxies and
        NO_PROXY for this server, REQUESTS_CA_BUNDLE, ~/.netrc): per request, that lookup
        was a tenth of the worker's CPU. The server's URL does not change, nor the answer."""
        env = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self.session.proxies.update(env.get("proxies") or {})
        self.session.verify = env.get("verify", True)
        if self.session.auth is None:
            self.session.auth = requests.utils.get_netrc_auth(self.base_url)
        self.session.trust_env = False

    def clone(self) -> "Couch":
        """The same server, database and credentials over a Session of its own (one per thread)."""
        twin = Couch(self.base_url, self.database, self.timeout_s)
        twin.user, twin._password, twin.safe_url = self.user, self._password, self.safe_url
        twin.session.auth = self.session.auth
        twin.session.proxies, twin.session.verify = dict(self.session.proxies), self.session.verify
        return twin

    def for_database(self, database: str) -> "Couch":
        """The same server and credentials, another database."""
        twin = self.clone()
        twin.database, twin._db_path = database, "/" + quote(database, safe="")
        return twin

    def __repr__(self):
        return f"Couch({self.safe_url!r}, {self.database!r})"

    # -- HTTP -------------------------------------------------------------------

    def _request(self, method, path, *, body=None, params=None, what=None, stream=False, timeout=None,
                 headers=None):
        """One request; returns the Response for 2xx (and 412 on PUT /db), raises CouchError otherwise."""
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            # Without this header pouchdb-server stores an empty document.
            hdrs["Content-Type"] = "application/json"
            data = json.dumps(body)
        try:
            resp = self.session.request(method, self.base_url + path, data=data, params=params,
                                        headers=hdrs, stream=stream,
                                        timeout=timeout or (self.timeout_s, self.timeout_s))
        except requests.exceptions.Timeout:
            raise Unavailable(f"CouchDB at {self.base_url} did not answer within {self.timeout_s:g}s") from None
        except requests.exceptions.ConnectionError as e:
            raise Unavailable(f"CouchDB at {self.base_url} is unreachable: {connection_reason(e)}") from None
        except requests.RequestException as e:
            raise CouchError(self._scrub(f"request to CouchDB at {self.base_url} failed: {e}")) from None
        if resp.status_code < 300:
            if not stream:
                resp.json = self._json_of(resp, what or f"{method} {path}")
            return resp
        try:
            raise self._error(resp, what or f"{method} {path}")
        finally:
            resp.close()

    def _json_of(self, resp, what: str):
        """resp.json, except that a body that is not JSON is a transient server fault
        (a proxy's error page, a response cut short), not a crash of the caller."""
        parse = resp.json

        def json_or_unavailable(**kwargs):
            try:
                return parse(**kwargs)
            except ValueError:
                raise Unavailable(f"CouchDB at {self.base_url} answered {what} with something "
                                  "that is not JSON") from None
        return json_or_unavailable

    def _error(self, resp, what: str) -> CouchError:
        status = resp.status_code
        try:
            payload = resp.json()
            error, reason = str(payload.get("error", "")), str(payload.get("reason", ""))
        except (ValueError, AttributeError):
            error, reason = "", resp.text[:200].strip()
        reason = self._scrub(" ".join(reason.split()))  # one line
        detail = reason or error or resp.reason or str(status)
        if status == 401:
            if self.user is None:
                return Unauthorized(f"CouchDB at {self.base_url} wants a user and password: "
                                    "put them in the URL (http://user:password@host:5984)", status)
            return Unauthorized(f"CouchDB at {self.base_url} refused the credentials for user '{self.user}'",
                                status)
        if status == 403:
            return Forbidden(f"{what} refused: {detail}", detail, status)
        if status == 404:
            return NotFound(f"{what}: not found ({detail})", status)
        if status == 409:
            return Conflict(f"{what}: conflict, the document changed since it was read", status)
        if status >= 500:
            return Unavailable(f"CouchDB at {self.base_url} failed on {what}: {status} {detail}", status)
        return CouchError(f"{what}: CouchDB answered {status} {error}: {detail}", status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _doc_path(self, doc_id: str) -> str:
        return f"{self._db_path}/{quote_doc_id(doc_id)}"

    # -- server and database ------------------------------------------------------

    def info(self) -> dict:
        return self._request("GET", "/", what="server info").json()

    def quorum(self) -> dict:
        """The database's cluster parameters as CouchDB 2+ states them in GET /db
        (`cluster`: q shards, n copies, w and r quorums); {} where none are stated
        (pouchdb-server, or a server that does not say)."""
        answer = self._request("GET", self._db_path, what=f"database '{self.database}'").json()
        cluster = answer.get("cluster") if isinstance(answer, dict) else None
        if not isinstance(cluster, dict):
            return {}
        return {k: v for k, v in cluster.items() if k in ("q", "n", "w", "r") and isinstance(v, int)}

    def whole(self) -> bool:
        """Whether the node we talk to reaches every node of its cluster now (GET
        /_membership: `all_nodes`, the nodes it is connected to, holds every one of
        `cluster_nodes`). A node cut off answers reads from its own copies only, and says
        nothing of it in the answer: a read that must see a quorum is trusted only while
        this holds, before and after it. A server without `_membership` is one node."""
        try:
            answer = self._request("GET", "/_membership", what="cluster membership").json()
        except NotFound:
            return True
        except (Unauthorized, Forbidden):
            return False   # only a server admin may ask: we cannot tell, so we do not trust
        nodes = set(answer.get("all_nodes") or [])
        return set(answer.get("cluster_nodes") or []) <= nodes

    def ensure_database(self) -> bool:
        """Create the database when missing; True if created."""
        # GET first: an anonymous or refused PUT /db has crashed pouchdb-server.
        try:
            self._request("GET", self._db_path, what=f"database '{self.database}'")
            return False
        except NotFound:
            pass
        try:
            self._request("PUT", self._db_path, what=f"create database '{self.database}'")
            return True
        except CouchError as e:
            if e.status == 412:  # created by someone else meanwhile
                return False
            raise

    def head_headers(self, path: str) -> dict:
        """The headers the server answers a HEAD of `path` (from the server's root) with."""
        return dict(self._request("HEAD", path, what=path, headers={"Accept": "*/*"}).headers)

    def put_security(self, security: dict) -> None:
        """Set the database's _security object (admins and members, by name or role)."""
        self._request("PUT", self._db_path + "/_security", body=security, what="setting _security")

    def put_config(self, section: str, key: str, value: str) -> str:
        """Set a server-wide setting; the value it had ('' if unset). Apache CouchDB takes it
        at /_node/_local/_config, pouchdb-server only at the older /_config."""
        last = None
        for prefix in ("/_node/_local/_config", "/_config"):
            try:
                resp = self._request("PUT", f"{prefix}/{section}/{key}", body=value,
                                     what=f"setting [{section}] {key}")
            except NotFound as e:
                last = e
                continue
            try:
                old = resp.json()
            except ValueError:
                old = ""
            return old if isinstance(old, str) else ""
        raise last

    def update_seq(self):
        """The database's current sequence: opaque, only to be handed back to changes()."""
        return self._request("GET", self._db_path, what=f"database '{self.database}'").json()["update_seq"]

    # -- documents ------------------------------------------------------------------

    def get(self, doc_id: str) -> dict:
        return self._request("GET", self._doc_path(doc_id), what=f"document '{doc_id}'").json()

    def get_attachment(self, doc_id: str, name: str) -> bytes:
        """The data of attachment `name` of document `doc_id` (NotFound when either is missing)."""
        return self._request("GET", f"{self._doc_path(doc_id)}/{quote(name, safe='')}",
                             what=f"attachment '{name}' of document '{doc_id}'", stream=True,
                             headers={"Accept": "*/*"}).content

    def put(self, doc: dict) -> str:
        """Create or update doc (with its _rev); returns the new rev."""
        doc_id = doc["_id"]
        return self._request("PUT", self._doc_path(doc_id), body=doc, what=f"document '{doc_id}'").json()["rev"]

    def post(self, doc: dict) -> tuple[str, str]:
        """Create a document with a server-chosen id; returns (id, rev)."""
        answer = self._request("POST", self._db_path, body=doc, what="new document").json()
        return answer["id"], answer["rev"]

    def delete(self, doc_id: str, rev: str) -> str:
        # Always with an explicit rev: pouchdb-server deletes without one, CouchDB answers 409.
        if not rev:
            raise ValueError(f"delete of '{doc_id}' needs the document's current _rev")
        return self._request("DELETE", self._doc_path(doc_id), params={"rev": rev},
                             what=f"document '{doc_id}'").json()["rev"]

    def bulk(self, docs: list[dict]) -> list[dict]:
        """Write many documents; one entry per doc, {"id","rev"} or {"id","error","reason"}.

        A CouchDB cluster answers 202 when a document reached fewer copies than its
        write quorum `w`, and marks each such document `"accepted": true`
        (chttpd_db:update_doc_result_to_json). Such a write is durable but has not won:
        a competing write on the same `_rev` may hold the majority (docs/guarantees.md).
        A 202 without per-document marks is read as "every write accepted only".
        """
        if not docs:
            return []
        resp = self._request("POST", self._db_path + "/_bulk_docs", body={"docs": docs},
                             what=f"bulk write of {len(docs)} documents")
        results = resp.json()
        if resp.status_code == 202 and isinstance(results, list) and \
                not any(isinstance(r, dict) and r.get("accepted") for r in results):
            results = [{**r, "accepted": True} if isinstance(r, dict) and "rev" in r else r for r in results]
        return results

    def put_quorum(self, doc: dict) -> tuple[str, bool]:
        """put(), also saying whether a write quorum took it (201) or fewer copies (202)."""
        doc_id = doc["_id"]
        resp = self._request("PUT", self._doc_path(doc_id), body=doc, what=f"document '{doc_id}'")
        return resp.json()["rev"], resp.status_code != 202

    def get_local(self, name: str) -> dict | None:
        """A _local document (not replicated, not in _changes), or None when absent."""
        try:
            doc = self.get("_local/" + name)
        except NotFound:
            return None
        self._local_revs[name] = doc.get("_rev", "")
        return doc

    def put_local(self, name: str, body: dict) -> None:
        """Write a _local document, replacing whatever is there."""
        for _ in range(3):
            doc = {**body, "_id": "_local/" + name}
            if self._local_revs.get(name):
                doc["_rev"] = self._local_revs[name]
            try:
                self._local_revs[name] = self.put(doc)
                return
            except Conflict:
                current = self.get_local(name)
                self._local_revs[name] = current["_rev"] if current else ""
        raise Conflict(f"_local/{name}: kept conflicting with another writer")

    # -- queries ----------------------------------------------------------------------

    def ensure_index(self, fields: list[str]) -> None:
        """A JSON index on fields (idempotent; remembered per Couch to save round trips)."""
        key = tuple(fields)
        if not fields or key in self._indexes:
            return
        name = "after-" + "-".join(f.replace(".", "_") for f in fields)
        self._request("POST", self._db_path + "/_index",
                      body={"index": {"fields": list(fields)}, "ddoc": name, "name": name, "type": "json"},
                      what=f"index on {', '.join(fields)}")
        self._indexes.add(key)

    def find(self, selector: dict, *, fields=None, limit=None, sort=None, page_size: int = FIND_PAGE_SIZE) -> list[dict]:
        """Every document matching selector (up to limit), read page by page.

        Pages with `skip`: pouchdb-server returns no `bookmark`, and paging on the last
        key would need a unique sort key that callers' sorts do not have. skip works
        with any selector and sort on both servers. The price: a document changed
        between two pages may be missed or seen twice (duplicates are dropped here), so
        callers that need completeness follow _changes from a checkpoint taken first.
        """
        self.ensure_index(index_fields(selector, sort))
        found: list[dict] = []
        seen: set[str] = set()
        skip = 0
        while limit is None or len(found) < limit:
            want = page_size if limit is None else min(page_size, limit - len(found))
            query = {"selector": selector, "limit": want, "skip": skip}
            if fields is not None:
                # _id is needed to drop duplicates between pages.
                query["fields"] = list(dict.fromkeys([*fields, "_id"]))
            if sort:
                query["sort"] = sort
            docs = self._request("POST", self._db_path + "/_find", body=query, what="find").json()["docs"]
            for doc in docs:
                if doc.get("_id") not in seen:
                    seen.add(doc.get("_id"))
                    found.append(doc)
            if len(docs) < want:
                break
            skip += len(docs)
        return found

    def view(self, view: str, **params) -> dict:
        """Query _design/after/_view/<view>; key/startkey/endkey/keys are JSON-encoded here."""
        keys = params.pop("keys", None)
        query = {name: encode_view_param(name, value) for name, value in params.items()}
        path = f"{self._doc_path(DESIGN_ID)}/_view/{quote(view, safe='')}"
        if keys is not None:
            return self._request("POST", path, params=query, body={"keys": keys}, what=f"view '{view}'").json()
        return self._request("GET", path, params=query, what=f"view '{view}'").json()

    def scan(self, selector: dict, page_size: int = SCAN_PAGE_SIZE, conflicts: bool = False):
        """Yield, page by page, the current version of every document matching `selector`.

        A normal _changes feed from the start, filtered on the server, paged by seq: exact
        (a document changed meanwhile comes again later in the feed, or is caught by a feed
        that follows from a seq taken before the scan), and it needs no index. A view or a
        _find index must first be built, which pouchdb-server does at about 2 ms a
        document, in one request (docs/benchmarks.md); scanning reads about 0.15 ms a
        document. `limit` counts matching rows, so an empty page is the end. `conflicts`
        adds `_conflicts` to a document that has conflicting revisions.
        """
        params = {"include_docs": "true", "limit": page_size, **selector_params(selector)}
        if conflicts:
            params["conflicts"] = "true"
        # The server reads the next page while the caller handles this one (its own
        # Session: one per thread): at start-up the worker's parsing and the server's
        # reading overlap on two cores instead of taking turns. Same pages, same order.
        fetcher = self.clone()

        def page(since):
            return fetcher._request(
                "POST", self._db_path + "/_changes", params={**params, "since": since},
                body={"selector": selector}, what="_changes", timeout=(self.timeout_s, SCAN_READ_TIMEOUT_S)).json()

        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="after-scan") as pool:
                pending = pool.submit(page, "0")
                while True:
                    answer = pending.result()
                    results = answer["results"]
                    if not results:
                        return
                    pending = pool.submit(page, answer["last_seq"])
                    yield [r["doc"] for r in results if r.get("doc") and not r.get("deleted")]
        finally:
            fetcher.session.close()

    def docs_with_prefix(self, prefix: str) -> list[dict]:
        """Every document whose id starts with `prefix`, from the primary index (_all_docs)."""
        answer = self._request("GET", self._db_path + "/_all_docs", what="_all_docs", params={
            "include_docs": "true", "startkey": json.dumps(prefix), "endkey": json.dumps(prefix + "\ufff0")})
        return [row["doc"] for row in answer.json()["rows"] if row.get("doc")]

    # -- the change feed ------------------------------------------------------------------

    def changes(self, since, *, selector: dict | None = None, limit: int | None = None,
                deadline_s: float = 10.0, cancel=None, on_open=None, conflicts: bool = False,
                style: str | None = None) -> tuple[list[dict], object]:
        """ONE longpoll _changes request with include_docs; returns (results, last_seq).

        `since` is opaque (an int here, a string in CouchDB 3): sent back as given.
        pouchdb-server ignores `timeout=` and keeps a quiet longpoll open, so the
        deadline is enforced here: the response is streamed (the server sends a
        heartbeat newline every second) and abandoned at the deadline, or when the
        optional threading.Event `cancel` is set; both return ([], since). `on_open()`,
        if given, is called once the server has accepted the request (a healthy feed).
        `conflicts=True` adds `_conflicts` to each document that has conflicting
        revisions; `style="all_docs"` lists every leaf revision of a change and makes a
        filter match any leaf, not only the winner (afterd/feed.py resolves conflicts).
        """
        params = {"feed": "longpoll", "include_docs": "true", "heartbeat": CHANGES_HEARTBEAT_MS,
                  "since": "0" if since is None else since}
        if limit is not None:
            params["limit"] = limit
        if conflicts:
            params["conflicts"] = "true"
        if style is not None:
            params["style"] = style
        body = None
        if selector is not None:
            params.update(selector_params(selector))
            body = {"selector": selector}
        deadline = clock.monotonic_s() + deadline_s
        # The read timeout bounds one silent wait; heartbeats keep a healthy feed well inside it.
        resp = self._request("POST", self._db_path + "/_changes", params=params, body=body or {},
                             what="_changes", stream=True, timeout=(self.timeout_s, deadline_s + 1.0),
                             headers={"Accept-Encoding": "identity"})
        if on_open is not None:
            on_open()
        chunks = []
        try:
            for chunk in resp.iter_content(chunk_size=None):
                chunks.append(chunk)
                if clock.monotonic_s() >= deadline or (cancel is not None and cancel.is_set()):
                    return [], since
        except requests.exceptions.ConnectionError as e:
            if clock.monotonic_s() >= deadline:
                return [], since
            raise Unavailable(f"CouchDB at {self.base_url} dropped the _changes request: "
                              f"{connection_reason(e)}") from None
        except requests.RequestException as e:
            raise Unavailable(f"CouchDB at {self.base_url} is unreachable: the _changes request broke ({type(e).__name__})") from None
        finally:
            resp.close()
        try:
            answer = json.loads(b"".join(chunks))
        except ValueError:
            raise Unavailable(f"CouchDB at {self.base_url} sent an incomplete _changes answer") from None
        return answer.get("results", []), answer.get("last_seq", since)

    # -- conflicting revisions (a CouchDB cluster) ---------------------------------------

    def get_conflicted(self, doc_id: str) -> dict | None:
        """The winning revision, with `_conflicts` listing its other live leaves if any; None when deleted."""
        try:
            return self._request("GET", self._doc_path(doc_id), params={"conflicts": "true"},
                                 what=f"document '{doc_id}'").json()
        except NotFound:
            return None

    def open_revs(self, doc_id: str, revs: list[str]) -> list[dict]:
        """These revisions of a document, in full. A revision that is gone (deleted meanwhile,
        or unknown) is left out, so fewer documents than revs means someone else resolved."""
        answer = self._request("GET", self._doc_path(doc_id),
                               params={"open_revs": json.dumps(list(revs), separators=(",", ":"))},
                               what=f"revisions of document '{doc_id}'").json()
        if not isinstance(answer, list):
            raise Unavailable(f"CouchDB at {self.base_url} answered the revisions of '{doc_id}' "
                              f"with something unusable: {answer!r:.80}")
        return [row["ok"] for row in answer
                if isinstance(row, dict) and isinstance(row.get("ok"), dict) and not row["ok"].get("_deleted")]

    def write_resolution(self, doc: dict | None, doc_id: str, losers: list[str]) -> list[dict]:
        """The merged document (over the winning rev), then, only once it is written, a
        deletion of each losing leaf. Answers are per document, as in bulk(): a conflict
        means someone else changed or resolved it first.

        Two requests, not one: in one _bulk_docs the merge can lose (409: the winning leaf
        was withdrawn or changed meanwhile) while the deletions succeed, and then no live
        leaf is left: the task is deleted. pouchdb-server also corrupts the document then
        (docs/couchdb-differences.md)."""
        answers = []
        if doc is not None:
            answers = self.bulk([doc])
            if any(r.get("error") for r in answers):
                return answers
        return answers + self.bulk([{"_id": doc_id, "_rev": rev, "_deleted": True} for rev in losers])

    # -- the design document -------------------------------------------------------------

    def ensure_design(self, doc: dict | None = None) -> bool:
        """Install or upgrade _design/after when its `version` differs; True if written.

        Safe when several workers do it at once: a 409 means someone else wrote it, so
        re-read and compare again. A numerically newer installed version is left alone,
        so an old worker never downgrades what a newer one installed.
        """
        if doc is None:
            from afterd.design import design_doc
            doc = design_doc()
        want = {**doc, "_id": DESIGN_ID}
        want.pop("_rev", None)
        for _ in range(5):
            current = self._design_without_conflicts()
            if current is not None and not should_replace(current.get("version"), want.get("version")):
                return False
            if current is not None:
                want["_rev"] = current["_rev"]
            try:
                self.put(want)
                return True
            except Conflict:
                continue
        raise Conflict(f"{DESIGN_ID}: kept changing while being installed; is another writer looping?")


    def _design_without_conflicts(self) -> dict | None:
        """_design/after as a quorum has it, after deleting any rival leaf: several workers
        starting at once through different nodes of a cluster can each install it (one
        answered 201, the others 202), and a conflicted design document would stay so.
        Any leaf but CouchDB's winner may go: each is a whole design, and the winner is
        upgraded next if it is the older one."""
        current = self.get_conflicted(DESIGN_ID)
        for rev in (current or {}).get("_conflicts", []):
            try:
                self.delete(DESIGN_ID, rev)
            except (NotFound, Conflict):
                pass   # another worker deleted it first
        return {k: v for k, v in current.items() if k != "_conflicts"} if current else None


def selector_params(selector: dict) -> dict:
    """The query parameters of a _changes request filtered by `selector`, which also goes
    in the body (CouchDB reads it there): with the body alone pouchdb-server crashes."""
    return {"filter": "_selector", "selector": json.dumps(selector, separators=(",", ":"))}


def should_replace(installed, wanted) -> bool:
    if installed == wanted:
        return False
    numbers = (int, float)
    if isinstance(installed, numbers) and isinstance(wanted, numbers) and not isinstance(installed, bool):
        return wanted > installed
    return True


def index_fields(selector: dict, sort) -> list[str]:
    """Fields for the index a query needs: sort fields first (CouchDB sorts on an index's prefix)."""
    sort_fields = [next(iter(s)) if isinstance(s, dict) else s for s in (sort or [])]
    selector_fields = sorted(k for k in selector if not k.startswith("$") and k != "_id")
    return list(dict.fromkeys(sort_fields + selector_fields))


def encode_view_param(name: str, value) -> str:
    if name in ("key", "startkey", "endkey", "start_key", "end_key") or isinstance(value, (bool, dict, list)):
        return json.dumps(value)
    return str(value)


def connection_reason(error: Exception) -> str:
    """'connection refused' and the like, from the urllib3 error nested inside requests'."""
    text = str(error).lower()
    for needle, reason in (("refused", "connection refused"), ("reset", "connection reset"),
                           ("name or service not known", "unknown host name"),
                           ("temporary failure in name resolution", "host name lookup failed"),
                           ("no route", "no route to host"), ("timed out", "timed out"),
                           ("remotedisconnected", "the server closed the connection"),
                           ("connection aborted", "the server closed the connection")):
        if needle in text:
            return reason
    return type(error).__name__


