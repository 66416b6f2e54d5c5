"""The store: the few operations after needs from CouchDB, and an in-memory twin.

`Store` lists what the worker, the feed, the writer, the lease and the CLI call on
a database; couch.Couch implements it over HTTP. `MemoryStore` implements it in
memory and behaves like CouchDB where after depends on it:

- revisions are "<generation>-<hash>": the generation grows by one per write, the
  hash is a function of the previous revision and the new body, as in CouchDB;
- a write with a stale or missing `_rev` is refused with Conflict (409), and a
  deletion leaves a tombstone that shows in the change feed;
- the change feed lists each document once, at its latest change, after an opaque
  `since` (a string here, as in CouchDB 3: callers store it and send it back);
- `_bulk_docs` answers per document; a validation hook plays validate_doc_update;
- `find` and the feed's selector understand the subset of Mango after uses;
- `_attachments`: data sent inline (base64) is stored and read back as a stub (content
  type, digest, length, revpos); a stub keeps the attachment of the version written
  over (412 missing_stub when it has none); an attachment a write leaves out is gone.

It is not a cluster: it never makes conflicting leaves (a CouchDB cluster can;
tests of that use pouchdb-server, tests/faults/test_cluster.py). tests/test_store.py
runs one contract suite against both stores.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
import uuid
from typing import Callable, Iterator, Protocol, runtime_checkable

from afterd import mango
from afterd.couch import DESIGN_ID, Conflict, CouchError, Forbidden, NotFound, should_replace


@runtime_checkable
class Store(Protocol):
    """What after calls on a database (docs/internals.md has each contract)."""

    database: str
    safe_url: str     # where it is, for logs: never with a password

    def clone(self) -> "Store": ...                       # one per thread
    def info(self) -> dict: ...
    def ensure_database(self) -> bool: ...
    def ensure_design(self, doc: dict | None = None) -> bool: ...
    def put_security(self, security: dict) -> None: ...
    def update_seq(self) -> object: ...                   # opaque

    def get(self, doc_id: str) -> dict: ...               # NotFound when missing or deleted
    def put(self, doc: dict) -> str: ...                  # new rev; Conflict; Forbidden
    def put_quorum(self, doc: dict) -> tuple[str, bool]: ...   # put(), and whether a write quorum took it
    def quorum(self) -> dict: ...                         # the database's n, w, r where stated
    def whole(self) -> bool: ...                          # the node we talk to reaches every node
    def post(self, doc: dict) -> tuple[str, str]: ...
    def delete(self, doc_id: str, rev: str) -> str: ...
    def bulk(self, docs: list[dict]) -> list[dict]: ...   # per doc {"id","rev"} | {"id","error","reason"}
    def get_local(self, name: str) -> dict | None: ...
    def put_local(self, name: str, body: dict) -> None: ...
    def get_attachment(self, doc_id: str, name: str) -> bytes: ...   # NotFound when missing

    def find(self, selector: dict, *, fields=None, limit=None, sort=None) -> list[dict]: ...
    def docs_with_prefix(self, prefix: str) -> list[dict]: ...
    def scan(self, selector: dict, page_size: int = ..., conflicts: bool = False) -> Iterator[list[dict]]: ...
    def changes(self, since, *, selector: dict | None = None, limit: int | None = None,
                deadline_s: float = 10.0, cancel=None, on_open=None, conflicts: bool = False,
                style: str | None = None) -> tuple[list[dict], object]: ...

    # Conflicting leaves (a CouchDB cluster; afterd/conflicts.py resolves them).
    def get_conflicted(self, doc_id: str) -> dict | None: ...
    def open_revs(self, doc_id: str, revs: list[str]) -> list[dict]: ...
    def write_resolution(self, doc: dict | None, doc_id: str, losers: list[str]) -> list[dict]: ...


# (new document, current document or None) -> None, or raise Forbidden: validate_doc_update.
Validator = Callable[[dict, "dict | None"], None]


def forbidden(reason: str) -> Forbidden:
    """What a validation hook raises, as CouchDB reports a `throw({forbidden: reason})`."""
    return Forbidden(f"refused: {reason}", reason)


class _Leaf:
    __slots__ = ("rev", "body", "deleted", "seq", "data")

    def __init__(self, rev: str, body: dict, deleted: bool, seq: int, data: dict | None = None):
        self.rev, self.body, self.deleted, self.seq = rev, body, deleted, seq
        self.data = data or {}     # attachment name -> bytes; body["_attachments"] has the stubs

    def doc(self, doc_id: str) -> dict:
        if self.deleted:
            return {"_id": doc_id, "_rev": self.rev, "_deleted": True}
        return {"_id": doc_id, "_rev": self.rev, **copy.deepcopy(self.body)}


class MemoryStore:
    """A CouchDB database in memory (see the module's docstring). Thread-safe; clone() is itself."""

    def __init__(self, database: str = "memory", *, validate: Validator | None = None):
        self.database = database
        self.safe_url = "memory:"
        self.validate = validate
        self._docs: dict[str, _Leaf] = {}
        self._by_seq: dict[int, str] = {}      # seq -> id of the document changed there
        self._seq = 0
        self._local: dict[str, dict] = {}
        self._security: dict | None = None
        self._created = False
        self._changed = threading.Condition(threading.RLock())

    def clone(self) -> "MemoryStore":
        return self

    def __repr__(self):
        return f"MemoryStore({self.database!r})"

    # -- server and database ------------------------------------------------------

    def info(self) -> dict:
        return {"couchdb": "Welcome", "version": "memory", "vendor": {"name": "after MemoryStore"}}

    def ensure_database(self) -> bool:
        created, self._created = not self._created, True
        return created

    def ensure_design(self, doc: dict | None = None) -> bool:
        if doc is None:
            from afterd.design import design_doc
            doc = design_doc()
        want = {**doc, "_id": DESIGN_ID}
        want.pop("_rev", None)
        with self._changed:
            current = self._current(DESIGN_ID)
            if current is not None and not should_replace(current.get("version"), want.get("version")):
                return False
            if current is not None:
                want["_rev"] = current["_rev"]
            self.put(want)
            return True

    def put_security(self, security: dict) -> None:
        self._security = copy.deepcopy(security)

    def update_seq(self) -> str:
        with self._changed:
            return _seq_text(self._seq)

    # -- documents ------------------------------------------------------------------

    def get(self, doc_id: str) -> dict:
        if doc_id.startswith("_local/"):
            doc = self.get_local(doc_id[len("_local/"):])
            if doc is None:
                raise NotFound(f"document '{doc_id}': not found (missing)", 404)
            return doc
        with self._changed:
            doc = self._current(doc_id)
        if doc is None:
            raise NotFound(f"document '{doc_id}': not found (missing)", 404)
        return doc

    def put(self, doc: dict) -> str:
        doc_id = doc["_id"]
        if doc_id.startswith("_local/"):
            return self._put_local_doc(doc)
        with self._changed:
            return self._write(doc, what=f"document '{doc_id}'")

    def put_quorum(self, doc: dict) -> tuple[str, bool]:
        return self.put(doc), True   # one copy: every write is a quorum's

    def quorum(self) -> dict:
        return {}

    def whole(self) -> bool:
        return True

    def post(self, doc: dict) -> tuple[str, str]:
        doc = {**doc, "_id": doc.get("_id") or uuid.uuid4().hex}
        with self._changed:
            rev = self._write(doc, what="new document")
        return doc["_id"], rev

    def delete(self, doc_id: str, rev: str) -> str:
        if not rev:
            raise ValueError(f"delete of '{doc_id}' needs the document's current _rev")
        with self._changed:
            if self._current(doc_id) is None:
                raise NotFound(f"document '{doc_id}': not found (deleted)", 404)
            return self._write({"_id": doc_id, "_rev": rev, "_deleted": True}, what=f"document '{doc_id}'")

    def bulk(self, docs: list[dict]) -> list[dict]:
        answers = []
        with self._changed:
            for doc in docs:
                doc = {**doc, "_id": doc.get("_id") or uuid.uuid4().hex}
                try:
                    answers.append({"id": doc["_id"], "rev": self._write(doc, what=f"document '{doc['_id']}'")})
                except Conflict:
                    answers.append({"id": doc["_id"], "error": "conflict", "reason": "Document update conflict."})
                except Forbidden as e:
                    answers.append({"id": doc["_id"], "error": "forbidden", "reason": e.reason})
                except CouchError as e:
                    answers.append({"id": doc["_id"], "error": "missing_stub" if e.status == 412 else "bad_request",
                                    "reason": str(e)})
        return answers

    def get_attachment(self, doc_id: str, name: str) -> bytes:
        with self._changed:
            leaf = self._docs.get(doc_id)
            data = None if leaf is None or leaf.deleted else leaf.data.get(name)
        if data is None:
            raise NotFound(f"attachment '{name}' of document '{doc_id}': not found (missing)", 404)
        return data

    def get_local(self, name: str) -> dict | None:
        with self._changed:
            doc = self._local.get(name)
            return copy.deepcopy(doc) if doc is not None else None

    def put_local(self, name: str, body: dict) -> None:
        with self._changed:
            current = self._local.get(name)
            self._put_local_doc({**body, "_id": "_local/" + name,
                                 **({"_rev": current["_rev"]} if current else {})})

    # -- queries ----------------------------------------------------------------------

    def find(self, selector: dict, *, fields=None, limit=None, sort=None, page_size: int = 0) -> list[dict]:
        with self._changed:
            found = [doc for doc in self._live_docs() if not doc["_id"].startswith("_design/")
                     and mango.matches(doc, selector)]
        for spec in reversed(sort or []):
            field, direction = next(iter(spec.items())) if isinstance(spec, dict) else (spec, "asc")
            found.sort(key=lambda d: mango.collate(mango.field(d, field)), reverse=direction == "desc")
        if limit is not None:
            found = found[:limit]
        if fields is not None:
            found = [mango.project(d, [*fields, "_id"]) for d in found]
        return found

    def docs_with_prefix(self, prefix: str) -> list[dict]:
        with self._changed:
            return [self._docs[i].doc(i) for i in sorted(self._docs)
                    if i.startswith(prefix) and not self._docs[i].deleted]

    def scan(self, selector: dict, page_size: int = 2000, conflicts: bool = False) -> Iterator[list[dict]]:
        since = "0"
        while True:
            results, since = self.changes(since, selector=selector, limit=page_size, deadline_s=0)
            if not results:
                return
            yield [r["doc"] for r in results if not r.get("deleted")]

    def changes(self, since, *, selector: dict | None = None, limit: int | None = None,
                deadline_s: float = 10.0, cancel=None, on_open=None, conflicts: bool = False,
                style: str | None = None) -> tuple[list[dict], object]:
        """Like one longpoll request: waits (at most deadline_s, in real time) for a change after `since`."""
        with self._changed:
            after = self._seq if since == "now" else _seq_number(since)
        deadline = time.monotonic() + deadline_s
        if on_open is not None:
            on_open()
        with self._changed:
            while True:
                results = self._changes_after(after, selector, limit)
                if results:
                    return results, results[-1]["seq"]
                left = deadline - time.monotonic()
                if left <= 0 or (cancel is not None and cancel.is_set()):
                    return [], since
                # Short waits, so a cancel Event set by another thread is seen.
                self._changed.wait(min(left, 0.05))

    # -- conflicting leaves: a single node never makes them -------------------------------

    def get_conflicted(self, doc_id: str) -> dict | None:
        with self._changed:
            return self._current(doc_id)

    def open_revs(self, doc_id: str, revs: list[str]) -> list[dict]:
        with self._changed:
            current = self._current(doc_id)
        return [current] if current is not None and current["_rev"] in revs else []

    def write_resolution(self, doc: dict | None, doc_id: str, losers: list[str]) -> list[dict]:
        answers = self.bulk([doc]) if doc is not None else []
        if any(r.get("error") for r in answers):
            return answers   # the merge lost: no deletion (see Couch.write_resolution)
        return answers + self.bulk([{"_id": doc_id, "_rev": rev, "_deleted": True} for rev in losers])

    # -- inside (callers hold the lock) ----------------------------------------------------

    def _current(self, doc_id: str) -> dict | None:
        leaf = self._docs.get(doc_id)
        return None if leaf is None or leaf.deleted else leaf.doc(doc_id)

    def _live_docs(self):
        return [leaf.doc(i) for i, leaf in self._docs.items() if not leaf.deleted]

    def _write(self, doc: dict, *, what: str) -> str:
        doc_id = doc["_id"]
        if not isinstance(doc_id, str) or not doc_id or (doc_id.startswith("_") and not doc_id.startswith("_design/")):
            raise CouchError(f"{what}: CouchDB answered 400 bad_request: invalid document id", 400)
        leaf = self._docs.get(doc_id)
        rev = doc.get("_rev")
        deleted = bool(doc.get("_deleted"))
        if leaf is None or leaf.deleted:
            # A new document, or one written again over its tombstone: no _rev, or the tombstone's.
            if rev is not None and (leaf is None or rev != leaf.rev):
                raise Conflict(f"{what}: conflict, the document changed since it was read", 409)
        elif rev != leaf.rev:
            raise Conflict(f"{what}: conflict, the document changed since it was read", 409)
        body = {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("_id", "_rev", "_deleted")}
        previous = leaf.rev if leaf is not None else None
        generation = (int(previous.split("-", 1)[0]) if previous else 0) + 1
        data = {}
        if "_attachments" in body and not deleted:
            current = leaf if leaf is not None and not leaf.deleted else None
            body["_attachments"], data = _attachments(body["_attachments"], current, generation, what)
            if not body["_attachments"]:
                del body["_attachments"]
        if self.validate is not None:
            old = None if leaf is None or leaf.deleted else leaf.doc(doc_id)
            # What validate_doc_update sees: a deletion is the bare tombstone.
            new = {"_id": doc_id, **({"_rev": rev} if rev is not None else {})}
            new.update({"_deleted": True} if deleted else body)
            try:
                self.validate(new, old)
            except Forbidden as e:
                raise Forbidden(f"{what} refused: {e.reason}", e.reason) from None
        digest = hashlib.md5(json.dumps([previous, deleted, body], sort_keys=True, default=str).encode()).hexdigest()
        new_rev = f"{generation}-{digest}"
        self._seq += 1
        if leaf is not None:
            self._by_seq.pop(leaf.seq, None)
        self._docs[doc_id] = _Leaf(new_rev, {} if deleted else body, deleted, self._seq, data)
        self._by_seq[self._seq] = doc_id
        self._changed.notify_all()
        return new_rev

    def _put_local_doc(self, doc: dict) -> str:
        name = doc["_id"][len("_local/"):]
        with self._changed:
            current = self._local.get(name)
            if doc.get("_rev") != (current["_rev"] if current else None):
                raise Conflict(f"document '{doc['_id']}': conflict, the document changed since it was read", 409)
            # CouchDB gives _local documents revisions "0-<n>" that only count writes.
            rev = f"0-{int(current['_rev'].split('-')[1]) + 1 if current else 1}"
            self._local[name] = {**copy.deepcopy(doc), "_rev": rev}
            return rev

    def _changes_after(self, after: int, selector: dict | None, limit: int | None) -> list[dict]:
        results = []
        for seq in sorted(s for s in self._by_seq if s > after):
            doc_id = self._by_seq[seq]
            leaf = self._docs[doc_id]
            doc = leaf.doc(doc_id)
            if selector is not None and not mango.matches(doc, selector):
                continue
            row = {"seq": _seq_text(seq), "id": doc_id, "changes": [{"rev": leaf.rev}], "doc": doc}
            if leaf.deleted:
                row["deleted"] = True
            results.append(row)
            if limit is not None and len(results) >= limit:
                break
        return results


def _attachments(atts, current: "_Leaf | None", generation: int, what: str) -> tuple[dict, dict]:
    """(stubs, data by name) of a write's `_attachments`, as CouchDB stores them."""
    import base64
    import binascii

    from afterd.outputs import stub

    if not isinstance(atts, dict):
        raise CouchError(f"{what}: CouchDB answered 400 bad_request: _attachments is not an object", 400)
    before = (current.body.get("_attachments") or {}) if current is not None else {}
    stubs, data = {}, {}
    for name, att in atts.items():
        if isinstance(att, dict) and att.get("stub"):
            if name not in before:
                raise CouchError(f"{what}: CouchDB answered 412 missing_stub: invalid attachment stub "
                                 f"for {name!r}", 412)
            stubs[name], data[name] = copy.deepcopy(before[name]), current.data[name]
        elif isinstance(att, dict) and isinstance(att.get("data"), str):
            try:
                raw = base64.b64decode(att["data"], validate=True)
            except (binascii.Error, ValueError):
                raise CouchError(f"{what}: CouchDB answered 400 bad_request: invalid base64 in "
                                 f"attachment {name!r}", 400) from None
            stubs[name] = stub(raw, generation, att.get("content_type") or "application/octet-stream")
            data[name] = raw
        else:
            raise CouchError(f"{what}: CouchDB answered 400 bad_request: attachment {name!r} has "
                             "neither data nor stub", 400)
    return stubs, data


# -- sequences: opaque to callers, as CouchDB 3's are ---------------------------------------

def _seq_text(n: int) -> str:
    return f"{n}-memory"


def _seq_number(since) -> int:
    if since in (None, "", "0", 0):
        return 0
    try:
        return int(str(since).split("-", 1)[0])
    except ValueError:
        raise CouchError(f"_changes: CouchDB answered 400 bad_request: malformed since {since!r}", 400) from None
