"""The task page's "Why, and when next" panel (console-lib.mjs explain(), the port of
`after explain`), in a real headless Chromium against pouchdb-server and a real worker."""

from console_harness import screenshot
from helpers import wait_for
from test_console_page import (ADMIN, get_doc, open_attached, post_task, record_task, soon, text_of, wait_text,
                               worker, records)  # noqa: F401 (fixtures)

import requests


def test_a_paused_task_says_since_when_and_who_paused_it(page, server, database, worker, records):
    # Given a task its worker holds, then paused by a user
    doc_id = post_task(server, database, record_task("w1", records, soon(3600)))
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "scheduled", 20, "the task scheduled")
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_text(page, "Why, and when next")
    wait_text(page, "Runs next at", "#explain")
    assert "alive (lease renewed" in text_of(page, "#explain")
    doc = get_doc(server, database, doc_id)
    r = requests.put(f"{server.url}/{database}/{doc_id}", json={**doc, "status": "pause"}, auth=ADMIN, timeout=10)
    assert r.status_code == 201, r.text
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "paused", 20, "the worker to say paused")
    paused_at = get_doc(server, database, doc_id)["paused_at"]

    # When the operator looks at its page (it follows the change without a reload)
    wait_text(page, "Paused since", "#explain")

    # Then the panel says since when, that a user did it, and how to undo it, as `after explain` does
    said = text_of(page, "#explain")
    since = paused_at.replace("T", " ").replace("Z", "")[:19] + " UTC"
    assert f"Paused since {since}" in said and "by a user: no process arms it until it is resumed" in said
    screenshot(page, "task-paused-explain")
