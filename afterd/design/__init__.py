"""`_design/after` as files: validate_doc_update.js and one map file per view.

design_doc() is the body `couch.ensure_design()` installs. Its `version` is a hash of
everything else in it, so an installer replaces the design document only when it changed.
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
}


def read_function(name: str) -> str:
    # Stripped: pouchdb-server evaluates "(" + source + ")", so nothing may follow the
    # closing brace (a trailing comment would swallow the parenthesis).
    return (HERE / name).read_text(encoding="utf-8").strip()


def design_doc() -> dict:
    views = {}
    for name, reduce in VIEWS.items():
        views[name] = {"map": read_function(f"{name}.map.js")}
        if reduce:
            views[name]["reduce"] = reduce
    body = {
        "_id": DESIGN_ID,
        "language": "javascript",
        "validate_doc_update": read_function("validate_doc_update.js"),
        "views": views,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    body["version"] = digest[:16]
    return body
