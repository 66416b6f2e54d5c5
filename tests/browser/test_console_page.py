"""The console in a real headless Chromium, against pouchdb-server and a real worker.

Attached: the page is opened where CouchDB serves it, /<db>/_design/after/console.html.
Where the database has members CouchDB serves it to a logged-in browser only, so those
tests log in as an operator would before opening it (a session cookie from /_session, as
Fauxton's login gives); the page's own login form is tested through `after console`,
which serves the page to anyone and leaves logging in to CouchDB.
"""

from datetime import datetime, timedelta, timezone

import pytest
import requests

from console_harness import (ADMIN, HOSTILE, USERS, ProxyThread, admin_url, after_cli, by_css, click,  # noqa: F401
                             follow_link, get_doc, go, iso, open_attached, post_task, record_task, row_of, screenshot, soon,
                             text_of, wait_text, wait_visible)
from helpers import wait_for
from workers import ENGINE_JOBS, WorkerProcess

@pytest.fixture
def worker(server, database, tmp_path):
    proc = WorkerProcess("w1", admin_url(server), database, tmp_path / "state", jobs_dir=ENGINE_JOBS,
                         env={"AFTER_LEASE_S": "20"}).start()
    yield proc
    proc.stop()


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "records"
    path.mkdir()
    return path


def test_a_posted_task_shows_without_reload_and_goes_scheduled_then_done(page, server, database, worker, records):
    # Given an operator on the attached console's task list, with a worker running
    open_attached(page, server, database, hash_="#tasks")
    wait_text(page, "Tasks")
    assert not by_css(page, "#banner:not([hidden])"), "an operator is not read-only"
    page.execute_script("window.__sameDocument = 1")   # gone if the page reloaded

    # When a task is POSTed over plain HTTP, due in a few seconds
    doc_id = post_task(server, database, record_task("w1", records, soon(4), say="printed by the job"))

    # Then it appears, is scheduled, then done, without a reload
    wait_for(lambda: "scheduled" in row_of(page, doc_id), 20, f"{doc_id} scheduled: {text_of(page)[:600]}")
    screenshot(page, "tasks")
    wait_for(lambda: "done" in row_of(page, doc_id), 30, f"{doc_id} done: {text_of(page)[:600]}")
    assert page.execute_script("return window.__sameDocument") == 1

    # And the task's page shows its fields and its run
    go(page, f"#task/{doc_id}")
    wait_text(page, "Runs")
    main = text_of(page)
    assert "✓ done" in main and "record" in main and str(records) in main
    # with what the job printed, in the run's row of the history
    wait_for(lambda: "printed by the job out 1" in page.execute_script(
        "const c = document.querySelector('main td[data-label=\"Output\"]'); return c ? c.innerText : ''"),
        20, "the run's output in the history")
    screenshot(page, "task-done")

    # And the summary counts it, and its one worker process in the singular
    go(page, "#summary")
    wait_text(page, "Runs per hour")
    wait_text(page, "done")
    wait_text(page, "1 live process")
    assert "1 live processes" not in text_of(page) and "1 tasks" not in text_of(page)
    screenshot(page, "summary")
    go(page, "#workers")
    wait_text(page, "w1")
    assert "● live" in text_of(page) and str(worker.proc.pid) in text_of(page)
    screenshot(page, "workers")


def test_upcoming_running_and_failures(page, server, database, worker, records):
    later = post_task(server, database, record_task("w1", records, soon(3600)))
    slow = post_task(server, database, record_task("w1", records, soon(1), sleep_s=60))
    failing = post_task(server, database, {**record_task("w1", records, soon(1), fail=True)})
    open_attached(page, server, database, hash_="#upcoming")

    # Upcoming: the task due in an hour, with a countdown
    wait_for(lambda: "in 59m" in row_of(page, later) or "in 1h" in row_of(page, later), 20,
             f"countdown for {later}: {text_of(page)[:600]}")
    screenshot(page, "upcoming")

    # Running now: the slow one, with its elapsed time; cancel it from there
    go(page, "#running")
    wait_text(page, "Running now")
    wait_for(lambda: row_of(page, slow), 30, f"{slow} running: {text_of(page)[:600]}")
    screenshot(page, "running")
    click(page, f"cancel-{slow}")
    wait_for(lambda: get_doc(server, database, slow)["status"] == "canceled", 30, "the running task canceled")
    wait_for(lambda: not row_of(page, slow), 20, "the canceled task gone from running")
    # A user's cancel is what was asked, not a failure: the worker's log says so, not at ERROR
    log = worker.log()
    assert "job record canceled (a user's cancel)" in log and "failed: canceled" not in log, log[-2000:]

    # Failures: grouped by job, with the reason
    wait_for(lambda: get_doc(server, database, failing)["status"] == "error", 30, "the failing task to fail")
    go(page, "#failures")
    wait_text(page, "By job", timeout_s=30)
    wait_for(lambda: row_of(page, failing), 20, f"{failing} in failures: {text_of(page)[:600]}")
    assert "record" in text_of(page)
    screenshot(page, "failures")
    go(page, f"#task/{failing}")
    wait_text(page, "✗")
    screenshot(page, "task-error")

    # The summary counts them all: by status, the failure of the last 24 h, the next due
    go(page, "#summary")
    wait_text(page, "Next due")
    wait_for(lambda: "canceled" in text_of(page) and "error" in text_of(page), 20, "the summary's counts")
    wait_text(page, "1 failed run")
    assert "1 failed runs" not in text_of(page)
    screenshot(page, "summary-busy")


def test_add_a_task_through_the_form_and_a_refused_one_shows_the_reason(page, server, database):
    open_attached(page, server, database, hash_="#add")
    wait_visible(page, "a-worker")

    # When the form is filled and sent
    page.find_element("id", "a-worker").send_keys("manobi")
    page.find_element("id", "a-job").send_keys("generate_billing")
    args = page.find_element("id", "a-args")
    args.clear()
    args.send_keys('["1234"]')
    page.find_element("id", "a-repeat").send_keys("1M7d")
    before = datetime.now(timezone.utc)
    click(page, "a-submit")

    # Then CouchDB has it, due in about ten minutes, repeating every month and 7 days
    wait_text(page, "Added", "#add-status")
    doc_id = page.find_element("css selector", "#add-status a").text
    doc = get_doc(server, database, doc_id)
    # the date said as every date of the page is: UTC, with seconds, the local time on hover
    said = page.find_element("css selector", "#add-status time")
    assert said.text == datetime.fromisoformat(doc["date"].replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert said.get_attribute("title").startswith("local: ")
    assert doc["worker"] == "manobi" and doc["job"] == {"name": "generate_billing", "arguments": ["1234"]}
    assert doc["repeat"] == {"months": 1, "days": 7} and doc["status"] == "waiting"
    due = datetime.fromisoformat(doc["date"].replace("Z", "+00:00"))
    assert timedelta(minutes=9) < due - before < timedelta(minutes=11)

    # When a job name CouchDB refuses is sent, the 403 reason shows next to the job field
    job = page.find_element("id", "a-job")
    job.clear()
    job.send_keys("not a job!")
    click(page, "a-submit")
    wait_text(page, "job.name", "#a-job-error")
    assert "is not a job name" in text_of(page, "#a-job-error")
    screenshot(page, "add-refused")

    # A wall-clock date in a time zone is stored in UTC (Lisbon is UTC+1 in summer), and
    # the zone goes with the repeat
    job.clear()
    job.send_keys("generate_billing")
    when = page.find_element("id", "a-date")
    when.clear()
    when.send_keys("2027-07-05 03:00")
    page.find_element("id", "a-tz").send_keys("Europe/Lisbon")
    click(page, "a-submit")
    wait_for(lambda: page.execute_script("const a = document.querySelector('#add-status a');"
                                         "return a && a.textContent !== arguments[0]", doc_id), 20, "a second task")
    zoned = get_doc(server, database, page.find_element("css selector", "#add-status a").text)
    assert zoned["date"] == "2027-07-05T02:00:00Z" and zoned["repeat"] == {"months": 1, "days": 7, "tz": "Europe/Lisbon"}

    # And the task page says its repeat in words
    go(page, f"#task/{doc_id}")
    wait_text(page, "every month and 7 days, next")


def test_cancel_and_reschedule_from_the_task_page(page, server, database, worker, records):
    doc_id = post_task(server, database, record_task("w1", records, soon(3600)))
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "scheduled", 20, "the task scheduled")
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_visible(page, "act-reschedule")

    # Reschedule: a new date typed in the field
    field = page.find_element("id", "resched-date")
    field.clear()
    field.send_keys("2031-02-03 04:05")
    click(page, "act-reschedule")
    wait_for(lambda: get_doc(server, database, doc_id)["date"] == "2031-02-03T04:05:00Z", 20, "the new date stored")
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "scheduled", 20, "re-armed by the worker")
    wait_text(page, "2031-02-03 04:05:00 UTC")
    screenshot(page, "task-rescheduled")

    wait_text(page, "Moved to", "#action-status")

    # Cancel, with someone else writing the task between the page's read and its write:
    # CouchDB answers 409, the page reads the task again and writes on the fresh revision
    page.execute_script("""
        const original = window.fetch;
        let once = false;
        window.fetch = async (url, init) => {
          if (!once && init && init.method === "PUT") {
            once = true;
            const doc = await (await original(url, {credentials: "same-origin"})).json();
            doc.note = "changed meanwhile";
            const r = await original(url, {method: "PUT", credentials: "same-origin",
                                           headers: {"Content-Type": "application/json"}, body: JSON.stringify(doc)});
            window.__interleaved = r.status;
          }
          return original(url, init);
        };""")
    click(page, "act-cancel")
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "canceled", 20, "canceled by the worker")
    assert page.execute_script("return window.__interleaved") == 201
    assert get_doc(server, database, doc_id)["note"] == "changed meanwhile"
    wait_text(page, "⊘ canceled")


def test_a_hostile_argument_renders_as_text(page, server, database):
    doc_id = post_task(server, database, {"worker": HOSTILE, "date": soon(600), "status": "waiting",
                                          "job": {"name": "record", "arguments": [HOSTILE, {"html": HOSTILE}]},
                                          "note": HOSTILE})
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_text(page, HOSTILE)
    go(page, "#tasks")
    wait_for(lambda: HOSTILE in row_of(page, doc_id), 20, "the hostile worker name as text in the list")
    go(page, f"#task/{doc_id}")
    wait_text(page, "whole document")
    page.find_element("css selector", "details summary").click()
    assert not by_css(page, "main img"), "an <img> element was made from a task's text"
    assert page.execute_script("return window.__pwned") is None
    screenshot(page, "hostile")


def test_a_read_only_user_sees_everything_and_changes_nothing(page, server, database):
    doc_id = post_task(server, database, {"worker": "nobody", "date": soon(600), "status": "waiting",
                                          "job": {"name": "record", "arguments": []}})
    open_attached(page, server, database, user="viewer", hash_=f"#task/{doc_id}")

    # The page says so, and its buttons are off
    wait_text(page, "Read-only", "#banner")
    wait_text(page, doc_id)
    for button_id in ("act-cancel", "act-delete", "act-reschedule"):
        assert not page.find_element("id", button_id).is_enabled(), button_id
    screenshot(page, "read-only")

    # And CouchDB itself refuses a write made from the page with the viewer's session
    answer = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const path = location.pathname.split("/_design/")[0] + "/" + encodeURIComponent(arguments[0]);
        fetch(path, {credentials: "same-origin"}).then((r) => r.json()).then((doc) => {
          doc.status = "cancel";
          return fetch(path, {method: "PUT", credentials: "same-origin",
                              headers: {"Content-Type": "application/json"}, body: JSON.stringify(doc)});
        }).then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));
    """, doc_id)
    assert answer[0] == 403 and "read-only" in answer[1], answer
    assert get_doc(server, database, doc_id)["status"] == "waiting"

    # The form cannot be sent either
    go(page, "#add")
    wait_visible(page, "a-submit")
    assert not page.find_element("id", "a-submit").is_enabled()


def test_through_after_console_log_in_with_the_form_and_follow_live(page, server, database, worker, records):
    with ProxyThread(admin_url(server), database) as proxy:
        # Given `after console`, the page asks for a login (the proxy adds no credentials)
        page.get(proxy.address)
        wait_visible(page, "login-name")
        assert not page.find_element("id", "nav").is_displayed() and not page.find_element("id", "logout").is_displayed()
        page.set_window_size(1100, 700)
        screenshot(page, "login")

        # A wrong password is said so
        page.find_element("id", "login-name").send_keys("operator")
        page.find_element("id", "login-password").send_keys("wrong")
        click(page, "login-submit")
        wait_text(page, "wrong", "#login-error")

        # The right one opens the console
        pw = page.find_element("id", "login-password")
        pw.clear()
        pw.send_keys(USERS["operator"][0])
        click(page, "login-submit")
        wait_visible(page, "nav")
        go(page, "#tasks")
        wait_text(page, "Tasks")

        # A task posted meanwhile appears and runs, followed through the proxy's _changes
        doc_id = post_task(server, database, record_task("w1", records, soon(2)))
        wait_for(lambda: "done" in row_of(page, doc_id), 30, f"{doc_id} done through the proxy: {text_of(page)[:600]}")

        # At phone width the task page is still readable
        page.set_window_size(390, 844)
        go(page, f"#task/{doc_id}")
        wait_text(page, "Runs")
        screenshot(page, "phone-task")
        go(page, "#tasks")
        wait_for(lambda: row_of(page, doc_id), 20, "the task list at phone width")
        screenshot(page, "phone-tasks")

        # Log out: back to the login form
        page.set_window_size(1280, 1000)
        click(page, "logout")
        wait_visible(page, "login-name")


def test_keyboard_moves_between_views(page, server, database):
    open_attached(page, server, database)
    wait_text(page, "Summary")
    body = page.find_element("css selector", "body")
    body.send_keys("6")
    wait_text(page, "Workers")
    body = page.find_element("css selector", "body")
    body.send_keys("/")
    wait_for(lambda: page.switch_to.active_element.get_attribute("id") == "f-q", 10, "the id search focused")


def test_the_task_list_pages_through_every_task_once_in_date_order(page, server, database):
    # Given 130 tasks, 30 of them at one same date (a page boundary falls inside those)
    base = datetime(2030, 1, 1, tzinfo=timezone.utc)
    docs = [{"_id": f"p{i:03d}", "worker": "nobody", "status": "waiting", "job": {"name": "record"},
             "date": iso(base + timedelta(minutes=i if i < 100 else 100))} for i in range(130)]
    r = requests.post(f"{server.url}/{database}/_bulk_docs", json={"docs": docs}, auth=ADMIN, timeout=30)
    assert r.status_code == 201 and all("rev" in x for x in r.json()), r.text
    open_attached(page, server, database, hash_="#tasks?worker=nobody")

    # When the pages are walked with the "next" link
    seen, dates = [], []
    for page_no in range(1, 10):
        wait_for(lambda: page.execute_script("const p = document.querySelector('main .pager');"
                                             "return p && p.dataset.page") == str(page_no), 20, f"page {page_no}")
        wait_for(lambda: page.execute_script("return document.querySelectorAll('main tbody a.id').length"), 20,
                 "a page of tasks")
        rows = page.execute_script("""return [...document.querySelectorAll('main tbody tr')].map(
            (r) => [r.querySelector('a.id').textContent, r.querySelector('time').getAttribute('datetime')])""")
        seen += [row[0] for row in rows]
        dates += [row[1] for row in rows]
        if not by_css(page, "main a[rel=next]"):
            break
        follow_link(page, "main a[rel=next]")

    # Then every task was listed once, by date
    assert len(seen) == 130 and set(seen) == {d["_id"] for d in docs}
    assert dates == sorted(dates)
    assert page_no == 3


def test_run_now_writes_its_status_or_shows_why_not_and_delete_asks_twice(page, server, database):
    doc_id = post_task(server, database, {"worker": "nobody", "date": soon(600), "status": "waiting",
                                          "job": {"name": "record", "arguments": []}})
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_visible(page, "act-run")

    # Run now is a write of status "run" (no worker here takes it)
    click(page, "act-run")
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "run", 20,
             f"run written: {text_of(page, '#action-status')}")
    wait_text(page, "Marked run", "#action-status")

    # Delete asks once more, then deletes and goes back to the list
    click(page, "act-delete")
    wait_text(page, "Really delete?")
    assert requests.get(f"{server.url}/{database}/{doc_id}", auth=ADMIN, timeout=10).status_code == 200
    click(page, "act-delete")
    wait_for(lambda: requests.get(f"{server.url}/{database}/{doc_id}", auth=ADMIN, timeout=10).status_code == 404,
             20, "the task deleted")
    wait_for(lambda: page.execute_script("return location.hash") == "#tasks", 10, "back to the list")


def test_a_server_without_admins_opens_without_login(page, tmp_path):
    """pouchdb-server's default (and `make run`'s): everyone is admin, there is no one to log
    in as, so the page opens at once, and acts."""
    from couchdb_server import PouchServer

    from console_harness import after_cli

    open_server = PouchServer(tmp_path / "open-couch").start()
    try:
        assert after_cli("init", url=open_server.url, database="tasks").returncode == 0
        page.get(f"{open_server.url}/tasks/_design/after/console.html#add")
        wait_visible(page, "a-submit")
        assert page.find_element("id", "a-submit").is_enabled()
        assert "without admins" in text_of(page, "#user")
    finally:
        open_server.remove()


def test_run_now_on_a_paused_task_is_refused_by_the_page_the_cli_and_a_raw_write(page, server, database, worker,
                                                                                  records):
    # Given a task its worker holds paused
    doc_id = post_task(server, database, record_task("w1", records, soon(3600)))
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "scheduled", 20, "the task scheduled")
    paused = after_cli("pause", doc_id, url=admin_url(server), database=database)
    assert paused.returncode == 0, paused.stderr
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "paused", 20, "the task paused")
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_visible(page, "act-resume")

    # The page shows no countdown for it: it waits for a resume, not for its date
    date = page.execute_script("const dt = [...document.querySelectorAll('main dl.fields dt')]"
                               "  .find((d) => d.textContent === 'Date');"
                               "return dt.nextElementSibling.innerText")
    assert "paused" in date and " in " not in date and not by_css(page, "main dl.fields .tick"), date

    # When Run now is pressed on the page, CouchDB refuses it and the page says to resume first
    click(page, "act-run")
    wait_text(page, "resume it first", "#action-status")
    screenshot(page, "task-paused")
    # `after run` refuses it in the same words
    cli = after_cli("run", doc_id, url=admin_url(server), database=database)
    assert cli.returncode == 1 and "paused: resume it first, then run it" in cli.stdout + cli.stderr, cli
    # and so does a raw write of status "run", as curl would send it
    doc = get_doc(server, database, doc_id)
    raw = requests.put(f"{server.url}/{database}/{doc_id}", json={**doc, "status": "run"},
                       auth=("operator", "op-pw"), timeout=10)
    assert raw.status_code == 403 and "paused: resume it first, then run it" in raw.json()["reason"], raw.text

    # Then the task is still paused and never ran
    assert get_doc(server, database, doc_id)["status"] == "paused"
    assert not (records / "runs.jsonl").exists()

    # Once resumed, Run now runs it
    click(page, "act-resume")
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "scheduled", 20, "resumed")
    wait_visible(page, "act-run")
    click(page, "act-run")
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "done", 30, "run now, once")


def test_a_run_nows_history_row_is_dated_when_it_ran(page, server, database, worker, records):
    # Given a repeating task whose next occurrence is an hour away
    doc_id = post_task(server, database, {**record_task("w1", records, soon(3600)), "repeat": {"days": 1}})
    wait_for(lambda: get_doc(server, database, doc_id)["status"] == "scheduled", 20, "the task scheduled")
    next_date = get_doc(server, database, doc_id)["date"]
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_visible(page, "act-run")

    # When Run now is pressed and the run ends
    asked = datetime.now(timezone.utc)
    click(page, "act-run")
    wait_for(lambda: get_doc(server, database, doc_id).get("runs") == 1
             and get_doc(server, database, doc_id)["status"] == "scheduled", 30, "the extra run done")

    # Then its history row says "run now", dated about when it ran, not the next occurrence
    wait_text(page, "(run now)")
    entry = get_doc(server, database, doc_id)["history"][-1]
    assert entry["run_now"] is True and entry["occurrence"] != next_date
    ran = datetime.fromisoformat(entry["occurrence"].replace("Z", "+00:00"))
    assert abs((ran - asked).total_seconds()) < 30
    occurrence = page.execute_script(
        "return document.querySelector('main tbody td[data-label^=\"Occurrence\"] time').getAttribute('datetime')")
    assert abs((datetime.fromisoformat(occurrence.replace("Z", "+00:00")) - asked).total_seconds()) < 30
    assert get_doc(server, database, doc_id)["date"] == next_date   # the chain keeps its date


def test_every_status_mark_has_a_glyph_in_this_browsers_fonts(page, server, database):
    open_attached(page, server, database)
    wait_text(page, "Summary")
    # Each mark drawn on a canvas with the page's font, against a code point no font has:
    # an empty box (the missing-glyph box) draws the same pixels.
    missing = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import("./console-lib.mjs").then(({STATUS_MARK}) => {
          const font = getComputedStyle(document.body).font;
          function pixels(text) {
            const c = document.createElement("canvas");
            c.width = 40; c.height = 40;
            const g = c.getContext("2d");
            g.font = font;
            g.fillText(text, 5, 30);
            return Array.from(g.getImageData(0, 0, 40, 40).data).join(",");
          }
          const box = pixels("\\u{10FFFD}");
          done(Object.entries(STATUS_MARK).filter(([, mark]) => pixels(mark) === box).map(([s, m]) => s + " " + m));
        }, (e) => done(["import failed: " + e]));
    """)
    assert missing == [], f"marks drawn as an empty box: {missing}"
