"""`_design/after` as files: validate_doc_update.js and one map file per view.

design_doc() is the body `couch.ensure_design()` installs. Its `version` is a hash of
everything else in it, so an installer replaces the design document only when it changed.

The database's floor on how often a task may repeat (the `min_repeat_s` setting) is
written into validate_doc_update's source, so CouchDB itself enforces it, and kept as
the field `min_repeat_s` for whoever reads the design document.
"""

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).parent
DESIGN_ID = "_design/after"

# view name -> reduce (None: map only). Each view's map is in <name>.map.js.
VIEWS = {
    "by_status": "_count",
    "by_worker_status": "_count",
    "active_by_worker": None,
    # The console's (afterd/console/): keys sort by UTC date, every list is a paged key range.
    "console_by_date": None,
    "console_due": None,
    "console_failures": "_count",
    "console_failures_by_job": "_count",
    "console_runs_by_hour": "_count",
    "console_by_owner": "_count",
    "console_jobs": "_count",
}


def read_function(name: str) -> str:
    # Stripped: pouchdb-server evaluates "(" + source + ")", so nothing may follow the
    # closing brace (a trailing comment would swallow the parenthesis).
    return (HERE / name).read_text(encoding="utf-8").strip()


# The line of validate_doc_update.js that design_doc() rewrites with the setting.
FLOOR_LINE = "var MIN_REPEAT_S = 1;"


def validate_source(min_repeat_s: float) -> str:
    from afterd.repeat import number_text

    source = read_function("validate_doc_update.js")
    assert source.count(FLOOR_LINE) == 1, "validate_doc_update.js lost its MIN_REPEAT_S line"
    return source.replace(FLOOR_LINE, f"var MIN_REPEAT_S = {number_text(min_repeat_s)};")


def installed_floor(store) -> float | None:
    """The `min_repeat_s` of the installed _design/after, or None (none installed, or older).

    A worker upgrading the design document keeps it: `after init` sets the floor from its
    settings, and a worker started with another after.conf must not undo that."""
    from afterd.couch import NotFound
    from afterd.fields import is_number

    try:
        value = store.get(DESIGN_ID).get("min_repeat_s")
    except NotFound:
        return None
    return float(value) if is_number(value) and value >= 0 else None


def design_doc(min_repeat_s: float | None = None) -> dict:
    """`min_repeat_s`: the floor (seconds; None: the default, 1; 0: none but the 1 ms offsets have)."""
    from afterd.repeat import DEFAULT_MIN_REPEAT_S

    if min_repeat_s is None:
        min_repeat_s = DEFAULT_MIN_REPEAT_S
    views = {}
    for name, reduce in VIEWS.items():
        views[name] = {"map": read_function(f"{name}.map.js")}
        if reduce:
            views[name]["reduce"] = reduce
    body = {
        "_id": DESIGN_ID,
        "language": "javascript",
        "validate_doc_update": validate_source(min_repeat_s),
        "min_repeat_s": min_repeat_s,
        "views": views,
    }
    # The console's static files ride along as attachments, so every install or upgrade
    # (after init, a worker starting) carries them and they count in `version`.
    from afterd.console.install import attachments
    body["_attachments"] = attachments()
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    body["version"] = digest[:16]
    return body
