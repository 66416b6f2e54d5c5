"""Getting into the console, and what may be attached where it runs.

A fresh browser at the address `after init` prints gets the console's own login form,
on pouchdb-server and on Apache CouchDB (AFTER_TEST_COUCHDB_URL), where the page runs
attached (the console's CSP) and through `after console` on a server left at its
defaults. And since an attached page runs with the session of whoever opens it, a
non-admin may attach to a task only what a worker writes: a run's output as text.
"""

import os
import subprocess
import sys
import threading

import requests

from console_harness import (ADMIN, ADMIN_PASSWORD, ROOT, admin_url, click, get_doc, init_says, log_in_with_form,
                             open_attached, post_task, record_task, screenshot, server_console_address, soon,
                             text_of, wait_text, wait_visible)
from helpers import wait_for
from workers import ENGINE_JOBS, WorkerProcess

OPERATOR = ("operator", "op-pw")


def run_history_outputs(page) -> list[str]:
    return page.execute_script("""return [...document.querySelectorAll('main tbody tr')]
        .map((r) => { const c = r.querySelector('td[data-label="Output"]'); return c ? c.innerText : ''; })""")


def test_a_fresh_browser_at_the_printed_address_logs_in_and_sees_a_runs_output(page, server, database, tmp_path):
    # Given a database set up by `after init`, and a worker whose task's job prints
    said = init_says(server, database)
    assert "not usable" not in said   # pouchdb-server, or CouchDB with the console's CSP
    address = server_console_address(said)
    records = tmp_path / "records"
    records.mkdir()
    worker = WorkerProcess("w1", admin_url(server), database, tmp_path / "state", jobs_dir=ENGINE_JOBS).start()
    try:
        doc_id = post_task(server, database, record_task("w1", records, soon(1), say="hello from the job"))

        # When a browser with no session opens the address init printed
        page.get(address)

        # Then it gets the console's login form, not CouchDB's JSON
        wait_visible(page, "login-name")
        assert "unauthorized" not in text_of(page, "body")
        page.set_window_size(1100, 700)
        screenshot(page, "login")
        page.set_window_size(1280, 1000)

        # A wrong password is said so, and the right one opens the console of that database
        log_in_with_form(page, "operator", "wrong")
        wait_text(page, "wrong", "#login-error")
        log_in_with_form(page, "operator")
        wait_visible(page, "nav")
        assert page.execute_script("return location.pathname") == f"/{database}/_design/after/console.html"

        # And the task's history shows what its job printed
        wait_for(lambda: get_doc(server, database, doc_id)["status"] == "done", 30, "the task done")
        page.execute_script("location.hash = arguments[0]", f"#task/{doc_id}")
        wait_text(page, "Run history")
        wait_for(lambda: any("hello from the job out 1" in cell and "hello from the job err 1" in cell
                             for cell in run_history_outputs(page)), 20,
                 f"the run's output in the history: {run_history_outputs(page)}")
        page.execute_script("[...document.querySelectorAll('main h3')].find((h) => h.textContent === 'Run history')"
                            ".scrollIntoView()")
        screenshot(page, "task-output")
    finally:
        worker.stop()


def test_a_user_who_may_not_read_the_database_is_told_so(page, server, database):
    # Given a user without either role
    url = f"{server.url}/_users/org.couchdb.user:stranger"
    old = requests.get(url, auth=ADMIN, timeout=10)
    doc = {"name": "stranger", "password": "st-pw", "roles": [], "type": "user",
           **({"_rev": old.json()["_rev"]} if old.ok else {})}
    assert requests.put(url, json=doc, auth=ADMIN, timeout=10).status_code in (201, 202)
    page.get(server_console_address(init_says(server, database)))
    log_in_with_form(page, "stranger", "st-pw")
    wait_text(page, "may not read the database", "#login-error")
    assert "after_reader" in text_of(page, "#login-error")


def test_after_console_on_a_server_left_at_its_defaults(page, sandboxed, database):
    server = sandboxed
    said = init_says(server, database)
    attached = requests.head(f"{server.url}/after-login/_design/after/login.html", timeout=10)
    if server.kind == "couchdb":
        # CouchDB at its defaults: attachments run no script, and init says so
        assert "sandbox" in attached.headers.get("Content-Security-Policy", ""), attached.headers
        assert "not usable on this server as it is" in said and "--console-csp" in said
        # and a browser there is told why, and what to do instead
        page.get(server_console_address(said))
        wait_for(lambda: "after console" in text_of(page, "body"), 15, f"the page says why: {text_of(page, 'body')}")
        screenshot(page, "login-sandboxed")
    # `after console` is the first way init offers, with its address
    first = said.index(f"console: run `after console --database {database}`")
    assert first < said.index("console on the server itself")
    printed = said[first:].splitlines()[1].strip()
    assert printed == f"http://127.0.0.1:5986/{database}/_design/after/console.html"

    proc = subprocess.Popen([sys.executable, "-m", "afterd", "console", "--port", "0"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "AFTER_COUCHDB_URL": server.url, "AFTER_CONFIG": os.devnull,
                                 "AFTER_DATABASE": database})
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        wait_for(lambda: lines or proc.poll() is not None, 20, "after console to print its address")
        address = lines[0].split("open ", 1)[1].strip()
        # The same page as printed, on the port this test's `after console` got
        assert address.split("/", 3)[3] == printed.split("/", 3)[3]
        page.get(address)
        log_in_with_form(page, "viewer")
        wait_visible(page, "nav")
        wait_text(page, "Read-only", "#banner")
        wait_text(page, "Summary")
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_a_non_admin_cannot_attach_html_or_javascript_to_a_task(page, server, database):
    db = f"{server.url}/{database}"
    doc_id = post_task(server, database, {"worker": "nobody", "date": soon(3600), "status": "waiting",
                                          "job": {"name": "record", "arguments": []}})

    # From the console page, with an operator's session (role "after"): refused
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_visible(page, "act-cancel")
    answer = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const path = location.pathname.split("/_design/")[0] + "/" + encodeURIComponent(arguments[0]);
        fetch(path, {credentials: "same-origin"}).then((r) => r.json()).then((doc) =>
          fetch(path + "/evil.html?rev=" + doc._rev, {method: "PUT", credentials: "same-origin",
                headers: {"Content-Type": "text/html"},
                body: "<script src='evil.js'></script>"})
        ).then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));
    """, doc_id)
    assert answer[0] == 403 and "only an admin may attach" in answer[1], answer

    # Over plain HTTP: a script, inline in a document, an output that is not text, on a new task
    rev = get_doc(server, database, doc_id)["_rev"]
    js = requests.put(f"{db}/{doc_id}/evil.js", params={"rev": rev}, data=b"fetch('/_node/_local/_config')",
                      headers={"Content-Type": "text/javascript"}, auth=OPERATOR, timeout=10)
    assert js.status_code == 403, js.text
    inline = {**get_doc(server, database, doc_id),
              "_attachments": {"page.html": {"content_type": "text/html", "data": "PHA+aGk8L3A+"}}}
    assert requests.put(f"{db}/{doc_id}", json=inline, auth=OPERATOR, timeout=10).status_code == 403
    fake_output = {**get_doc(server, database, doc_id),
                   "_attachments": {"output/1": {"content_type": "text/html", "data": "PHA+aGk8L3A+"}}}
    assert requests.put(f"{db}/{doc_id}", json=fake_output, auth=OPERATOR, timeout=10).status_code == 403
    new_task = {"worker": "nobody", "date": soon(3600), "status": "waiting", "job": {"name": "record"},
                "_attachments": {"x.html": {"content_type": "text/html", "data": "PHA+aGk8L3A+"}}}
    assert requests.post(db, json=new_task, auth=OPERATOR, timeout=10).status_code == 403
    # nor on a worker's record, which is not a task
    record = {"_id": "after:process:evil", "type": "process",
              "_attachments": {"x.html": {"content_type": "text/html", "data": "PHA+aGk8L3A+"}}}
    assert requests.put(f"{db}/{record['_id']}", json=record, auth=OPERATOR, timeout=10).status_code == 403
    assert "_attachments" not in get_doc(server, database, doc_id)

    # An admin may attach a file; an operator's later writes carry it on unchanged
    rev = get_doc(server, database, doc_id)["_rev"]
    made = requests.put(f"{db}/{doc_id}/notes.html", params={"rev": rev}, data=b"<p>admin's notes</p>",
                        headers={"Content-Type": "text/html"}, auth=ADMIN, timeout=10)
    assert made.status_code == 201, made.text
    click(page, "act-pause")
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "pause", 20,
             f"the operator's pause written: {text_of(page, '#action-status')}")
    assert "notes.html" in get_doc(server, database, doc_id)["_attachments"]
    assert ADMIN_PASSWORD not in text_of(page, "body")


def test_init_says_what_the_console_csp_lets_any_writer_do(server, database):
    said = init_says(server, database, "--console-csp")
    assert "ANY USER WHO CAN WRITE AN ATTACHMENT IN ANY DATABASE OF THIS SERVER CAN RUN" in said
    assert "ADMINS INCLUDED" in said
    # and `after console` still comes first
    assert said.index("console: run `after console") < said.index("console on the server itself")
