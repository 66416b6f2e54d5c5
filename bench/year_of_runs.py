"""What a task costs in bytes after a year of runs every minute (docs/guarantees.md).

Pure: the document is built by the worker's own functions, with no server. Each minute
of a year (525,600 runs) the run's outcome is put on the document as the worker does
it (outcome.outcome_fields, then outcome.apply_outcome), and the write's inline output
becomes the stub the server hands back (outputs.settle). At the end it prints the
document's JSON size (what validate_doc_update and every change-feed row carry) and
the bytes of output kept in attachments (stored beside it; neither sees them).

    .venv/bin/python bench/year_of_runs.py [--runs 525600]
"""

import argparse
import base64
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from afterd.outcome import Outcome, apply_outcome, outcome_fields  # noqa: E402
from afterd.outputs import settle  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
OWNER = {"process": "billing:host-1.example.org:0", "host": "host-1.example.org", "pid": 12345}
CASES = {
    # name: (ok, result or error, output of each run)
    "success, small result, 100 B output": (True, {"invoices": 12}, "x" * 99 + "\n"),
    "success, 4 KiB+ output (tail kept)": (True, {"invoices": 12}, "log line\n" * 1000),
    "failure, long message, 4 KiB+ output": (False, {"type": "RuntimeError", "message": "card declined " * 40,
                                                     "traceback": "Traceback ...\n" * 30}, "log line\n" * 1000),
    "success, no output": (True, {"invoices": 12}, None),
}


def year(runs: int, ok: bool, value, output) -> tuple[dict, int]:
    doc = {"_id": "generate_billing-1234", "_rev": "1-0", "worker": "billing",
           "date": "2026-01-01T00:00:00Z", "status": "scheduled", "owner": OWNER,
           "job": {"name": "generate_billing", "arguments": ["1234"]}, "repeat": {"minutes": 1},
           "anchor": "2026-01-01T00:00:00Z", "occurrence": 0}
    for n in range(runs):
        t = (START + timedelta(minutes=n)).timestamp()
        outcome = Outcome(f"r{n}", ok, value if ok else None, None if ok else value, t, t + 1.5, 0.0, output=output)
        fields, _ = outcome_fields(doc, outcome, now=datetime.fromtimestamp(t + 1.5, timezone.utc),
                                   process=OWNER["process"])
        doc = settle(apply_outcome(doc, fields, OWNER), f"{n + 2}-0123456789abcdef0123456789abcdef")
        doc["_rev"] = f"{n + 2}-0123456789abcdef0123456789abcdef"
    kept = sum(att["length"] for att in (doc.get("_attachments") or {}).values())
    return doc, kept


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=525_600)
    args = parser.parse_args()
    print(f"{args.runs:,} runs, history_limit 20, output_limit 4096")
    print(f"{'case':40} {'document JSON':>14} {'history':>8} {'stubs':>6} {'output kept':>12} {'time':>6}")
    for name, (ok, value, output) in CASES.items():
        t0 = time.monotonic()
        doc, kept = year(args.runs, ok, value, output)
        size = len(json.dumps(doc, separators=(",", ":")).encode())
        history = len(json.dumps(doc["history"], separators=(",", ":")).encode())
        stubs = len(doc.get("_attachments") or {})
        print(f"{name:40} {size:>12} B {history:>6} B {stubs:>6} {kept:>10} B {time.monotonic() - t0:>5.0f}s")


if __name__ == "__main__":
    main()
