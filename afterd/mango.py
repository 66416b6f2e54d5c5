"""Mango selectors, the subset after uses (pure): how MemoryStore (store.py) matches,
sorts and projects documents the way CouchDB's `_find` and `_changes?filter=_selector` do:
$and $or $nor $not, $eq $ne $gt $gte $lt $lte $in $nin $exists, nested objects and
dotted field paths, and CouchDB's collation order for sorting. Any other operator is
refused as CouchDB refuses an unknown one (400).
"""

import copy
import json

from afterd.couch import CouchError

MISSING = object()


def field(doc: dict, path: str, default=None):
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def project(doc: dict, fields: list[str]) -> dict:
    """Only these fields of doc (dotted paths keep their nesting), as _find's `fields` does."""
    out: dict = {}
    for path in dict.fromkeys(fields):
        value = field(doc, path, MISSING)
        if value is MISSING:
            continue
        *parents, last = path.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = copy.deepcopy(value)
    return out


def collate(value):
    """CouchDB's order across types: null < false < true < numbers < strings < arrays < objects."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, list):
        return (4, [collate(v) for v in value])
    return (5, json.dumps(value, sort_keys=True))


def matches(doc: dict, selector: dict) -> bool:
    """True when doc matches a Mango selector: fields (dotted paths) with a value or with
    $eq $ne $gt $gte $lt $lte $in $nin $exists, combined with $and $or $nor $not."""
    for key, cond in selector.items():
        if key == "$and":
            if not all(matches(doc, s) for s in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, s) for s in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, s) for s in cond):
                return False
        elif key == "$not":
            if matches(doc, cond):
                return False
        elif not _match_value(field(doc, key, MISSING), cond):
            return False
    return True


def _match_value(value, cond) -> bool:
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        return all(_match_op(value, op, arg) for op, arg in cond.items())
    if isinstance(cond, dict):
        return isinstance(value, dict) and matches(value, cond)
    return value is not MISSING and _equal(value, cond)


def _equal(a, b) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _match_op(value, op: str, arg) -> bool:
    if op == "$exists":
        return (value is not MISSING) == bool(arg)
    if value is MISSING:
        return False    # as in CouchDB: a missing field fails every test but {"$exists": false}
    if op == "$eq":
        return _equal(value, arg)
    if op == "$ne":
        return not _equal(value, arg)
    if op == "$in":
        return any(_equal(value, a) for a in arg)
    if op == "$nin":
        return not any(_equal(value, a) for a in arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        left, right = collate(value), collate(arg)
        return {"$gt": left > right, "$gte": left >= right, "$lt": left < right, "$lte": left <= right}[op]
    if op == "$not":
        return not _match_value(value, arg)
    raise CouchError(f"find: CouchDB answered 400 invalid_operator: {op} is not supported here", 400)
