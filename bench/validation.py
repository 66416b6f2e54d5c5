"""What validate_doc_update costs the server, against the document's size.

`AFTER_BENCH_COUCHDB_URL=... python -m bench.validation [N]` prints JSON: the server's CPU
per document (ms) for the writes a run makes — a new task (the user's POST), the claim
(`scheduled`, owner) and the outcome (`done`, a history entry added) — for a fresh task
and for one that already carries 20 runs of history, in a database with after's design
document and in one without (what the JavaScript process adds). `_bulk_docs` of 100, as
the worker's writer sends them. Without the URL it measures a pouchdb-server of its own.
"""

import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from afterd.couch import Couch
from afterd.history import history_entry
from bench.harness import HOST, WORKER, task
from bench.server import open_server

BATCH = 100
ME = f"{WORKER}:{HOST}:0"


def with_history(doc: dict, runs: int) -> dict:
    """A task that ran `runs` times a minute apart, as the worker leaves it (history, last_run)."""
    start = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)
    entries = []
    for k in range(runs):
        at = start + timedelta(minutes=k)
        entries.append(history_entry(occurrence=at, attempt=1, started_at=at + timedelta(milliseconds=2),
                                     finished_at=at + timedelta(milliseconds=40), status="done",
                                     result={"rows": 1200 + k}, process=ME))
    return {**doc, "history": entries, "runs": runs, "repeat": {"minutes": 1},
            "anchor": doc["date"], "occurrence": runs}


def cpu_per_doc(server, couch: Couch, docs: list[dict]) -> tuple[float, list[dict]]:
    """Write docs in batches; the server's CPU ms per document and the new revisions."""
    out = []
    c0 = server.cpu_s()
    for i in range(0, len(docs), BATCH):
        got = couch.bulk(docs[i:i + BATCH])
        bad = [r for r in got if "rev" not in r]
        if bad:
            raise RuntimeError(f"refused: {bad[:2]}")
        out.extend(got)
    return (server.cpu_s() - c0) / len(docs) * 1000, out


def measure(server, n: int, runs: int, validated: bool) -> dict:
    couch = server.database(f"validation-{runs}-{'v' if validated else 'plain'}")
    if not validated:
        couch._request("DELETE", couch._db_path + "/_design/after", params={"rev": couch._request(
            "GET", couch._db_path + "/_design/after", what="ddoc").json()["_rev"]}, what="drop ddoc")
    base = task("noop", time.time() + 86400, {"n": 1})
    docs = [with_history(base, runs) if runs else dict(base) for _ in range(n)]
    size = len(json.dumps(docs[0]))
    new_ms, revs = cpu_per_doc(server, couch, docs)
    claims = [{**d, "_id": r["id"], "_rev": r["rev"], "status": "scheduled",
               "owner": {"process": ME, "host": HOST, "pid": 1}} for d, r in zip(docs, revs)]
    claim_ms, revs = cpu_per_doc(server, couch, claims)
    outcomes = []
    for d, r in zip(claims, revs):
        entry = history_entry(occurrence=datetime.now(timezone.utc), attempt=1, started_at=datetime.now(timezone.utc),
                              finished_at=datetime.now(timezone.utc), status="done", process=ME)
        outcomes.append({**d, "_rev": r["rev"], "status": "done", "result": None,
                         "history": (d.get("history") or [])[1 if runs >= 20 else 0:] + [entry]})
    outcome_ms, _ = cpu_per_doc(server, couch, outcomes)
    server.drop(couch)
    return {"history_runs": runs, "validated": validated, "doc_bytes": size,
            "new_ms": new_ms, "claim_ms": claim_ms, "outcome_ms": outcome_ms}


def main(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="after-validation-") as tmp:
        server = open_server(Path(tmp))
        try:
            rows = [measure(server, n, runs, validated) for runs in (0, 20) for validated in (True, False)]
        finally:
            server.close()
    return {"server": server.info, "n": n, "batch": BATCH, "rows": rows}


if __name__ == "__main__":
    got = main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
    print(json.dumps(got["server"]))
    print(f"{'history':>8} {'valid.':>6} {'bytes':>6} {'new ms':>7} {'claim ms':>8} {'outcome ms':>10}")
    for r in got["rows"]:
        print(f"{r['history_runs']:>8} {str(r['validated']):>6} {r['doc_bytes']:>6} {r['new_ms']:>7.3f} "
              f"{r['claim_ms']:>8.3f} {r['outcome_ms']:>10.3f}")
