"""The console's task page says a cron repeat in words (real headless Chromium, pouchdb-server)."""

from console_harness import screenshot
from test_console_page import open_attached, post_task, soon, wait_text


def test_the_task_page_says_a_cron_schedule_in_words(page, server, database):
    doc_id = post_task(server, database, {"worker": "w1", "date": soon(600), "status": "waiting",
                                          "job": {"name": "report", "arguments": []},
                                          "repeat": {"cron": "0 3 * * 1-5", "tz": "Europe/Lisbon"}})
    open_attached(page, server, database, hash_=f"#task/{doc_id}")
    wait_text(page, "at 03:00 on Monday to Friday, Lisbon time (cron 0 3 * * 1-5), from ")
    screenshot(page, "task-cron")
