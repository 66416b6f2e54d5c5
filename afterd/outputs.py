"""A run's output, kept as an attachment of its task (pure, but for read_output).

Every write of a task runs validate_doc_update on the old and new bodies, and every
revision travels the change feed: neither carries an attachment's data, only its
stub (about 130 bytes). So the last `output_limit` bytes of what a run wrote (stdout
and stderr) are stored as the attachment `output/<n>` of the task, n being the run's
number (`runs` after it: 1 for the first run, never reused), in the same write as the
run's outcome; the run's history entry names it in `output_ref`. An output attachment
whose run fell out of `history` is dropped in that same write (its stub is left out).

Attachments that are not `output/...` belong to the user and are kept as they are.
Every other write of a task sends the stubs it read back unchanged: CouchDB drops an
attachment whose stub a write leaves out.
"""

from __future__ import annotations

import base64
import hashlib

PREFIX = "output/"
CONTENT_TYPE = "text/plain"
# The note an outcome's fields carry for apply_outcome: {"name", "data" (base64)}. Like
# outcome.REMOVE and outcome.CHAIN, never written as such.
NOTE = "_output"


def name(run_number: int) -> str:
    """The attachment of run number `run_number` (1 for a task's first run)."""
    return f"{PREFIX}{run_number}"


def note(run_number: int, text: str | None) -> dict | None:
    """What outcome_fields hands apply_outcome for a run that wrote `text` (None: nothing)."""
    if not text:
        return None
    return {"name": name(run_number), "data": base64.b64encode(text.encode("utf-8", "replace")).decode("ascii")}


def attachments_after(current, history, new: dict | None) -> dict | None:
    """The `_attachments` of a task after a run's outcome is put on `current` (the
    `_attachments` of the version written over): the user's as they are, the outputs
    still named by an entry of `history` as they are (stubs), and the new one inline.
    None when nothing is left (the field is then left out)."""
    kept = {}
    named = {entry.get("output_ref") for entry in history or [] if isinstance(entry, dict)}
    for key, att in (current or {}).items() if isinstance(current, dict) else ():
        if not key.startswith(PREFIX) or key in named:
            kept[key] = att
    if new is not None and new["name"] in named:
        kept[new["name"]] = {"content_type": CONTENT_TYPE, "data": new["data"]}
    return kept or None


def stub(data: bytes, revpos: int, content_type: str = CONTENT_TYPE) -> dict:
    """The stub CouchDB and pouchdb-server give back for an attachment written inline.
    CouchDB matches a stub by name; pouchdb-server by its digest (md5, base64)."""
    digest = "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode("ascii")
    return {"content_type": content_type, "digest": digest, "length": len(data),
            "revpos": revpos, "stub": True}


def settle(doc: dict, rev: str) -> dict:
    """`doc` as written with revision `rev`: inline attachments become their stubs (in
    place, and returned), so a later write of it carries stubs, not the data again."""
    atts = doc.get("_attachments")
    if isinstance(atts, dict) and any(isinstance(a, dict) and "data" in a for a in atts.values()):
        revpos = int(str(rev).split("-", 1)[0])
        doc["_attachments"] = {
            key: stub(base64.b64decode(att["data"]), revpos, att.get("content_type", CONTENT_TYPE))
            if isinstance(att, dict) and "data" in att else att
            for key, att in atts.items()}
    return doc


def output_names(doc: dict) -> list[str]:
    """The output attachments a task has, oldest run first."""
    atts = doc.get("_attachments") or {}
    found = [k for k in atts if k.startswith(PREFIX) and k[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda k: int(k[len(PREFIX):]))


def read_output(store, doc_id: str, ref: str | dict) -> str:
    """The output kept for one run of task `doc_id`, as text. `ref` is the attachment's
    name (a history entry's `output_ref`, e.g. "output/17") or the history entry itself.
    Raises couch.NotFound when the run kept none (no output, or it left the history)."""
    from afterd.couch import NotFound

    if isinstance(ref, dict):
        ref = ref.get("output_ref")
        if not ref:
            raise NotFound("this run kept no output", 404)
    return store.get_attachment(doc_id, ref).decode("utf-8", "replace")
