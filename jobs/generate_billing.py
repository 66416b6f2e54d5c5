"""Example job: write a customer's invoice as a JSON file.

Task arguments: [customer_id] or [customer_id, folder], or an object
{"customer_id": ..., "folder": ..., "items": [{"description": ..., "amount_cents": ...}]}.
The folder defaults to $AFTER_BILLING_DIR, else "after-billing" in the system's
temporary folder.

    after add --worker manobi --job generate_billing --arg 1234 --at "2026-12-01 03:00" --every 1M

The file is named after the customer and the task's date, so a run that is
repeated for the same occurrence (after a crash) rewrites the same invoice
instead of billing twice. Returns {"path": ..., "total_cents": ...}.
"""

import json
import os
import re
import tempfile
from pathlib import Path

# Replace with your own price list or a call to your billing system.
DEFAULT_ITEMS = [{"description": "monthly subscription", "amount_cents": 1500}]


def run(task):
    customer_id, folder, items = read_arguments(task.arguments)
    folder.mkdir(parents=True, exist_ok=True)
    invoice = {
        "customer_id": customer_id,
        "task_id": task.id,
        "period": task.date.strftime("%Y-%m-%d") if task.date else None,
        "items": items,
        "total_cents": sum(item["amount_cents"] for item in items),
    }
    stamp = task.date.strftime("%Y%m%dT%H%M%SZ") if task.date else "undated"
    path = folder / f"invoice-{safe_name(customer_id)}-{stamp}.json"
    write_atomically(path, json.dumps(invoice, indent=2) + "\n")
    task.logger.info("invoice for customer %s: %s (%d cents)", customer_id, path, invoice["total_cents"])
    return {"path": str(path), "total_cents": invoice["total_cents"]}


def read_arguments(arguments):
    if isinstance(arguments, dict):
        customer_id, folder, items = arguments.get("customer_id"), arguments.get("folder"), arguments.get("items")
    else:
        arguments = list(arguments or [])
        if not 1 <= len(arguments) <= 2:
            raise ValueError("arguments: expected [customer_id] or [customer_id, folder]")
        customer_id, folder, items = arguments[0], (arguments[1] if len(arguments) > 1 else None), None
    if customer_id in (None, ""):
        raise ValueError("arguments: a customer_id is required")
    folder = Path(folder or os.environ.get("AFTER_BILLING_DIR")
                  or Path(tempfile.gettempdir()) / "after-billing")
    items = DEFAULT_ITEMS if items is None else items
    for item in items:
        if not isinstance(item.get("amount_cents"), int) or isinstance(item.get("amount_cents"), bool):
            raise ValueError("items: every item needs a whole amount_cents (money is counted in cents)")
    return str(customer_id), folder, items


def safe_name(text: str) -> str:
    """The customer id as a file-name part: no slashes, no dots leading anywhere else."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:64]


def write_atomically(path: Path, text: str):
    """Readers never see half an invoice: write a temporary file, then rename it over."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
