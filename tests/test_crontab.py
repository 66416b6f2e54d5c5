"""Reading crontabs into tasks (afterd/crontab.py), with the cron math of afterd/cron.py: what a
cron user's lines become, which are refused and why, and how ids keep a line's task its own."""

from datetime import datetime, timezone

import pytest

from afterd import crontab
from afterd.cli.cronimport import next_date
from crontabs import SYSTEM_CRONTAB, USER_CRONTAB

NOW = datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc)   # two days before Lisbon's clocks go forward


def plan(text, existing=None, imported=(), system=False, user=None, source="user crontab", tz="Europe/Lisbon"):
    table = crontab.parse_crontab(text, system=system, user=user)
    steps = crontab.plan_import(table, existing or {}, list(imported), worker="billing", source=source, tz=tz,
                                now=NOW, next_date=next_date)
    return table, steps


def test_a_user_crontab_becomes_shell_tasks_with_its_environment():
    table, steps = plan(USER_CRONTAB)
    assert [s.kind for s in steps] == ["create"] * 10
    docs = {s.job.line: s.doc for s in steps}
    dump = docs[8]
    assert dump["worker"] == "billing" and dump["status"] == "waiting"
    assert dump["job"] == {"name": "shell", "arguments": {
        "script": 'pg_dump -Fc billing > "$BACKUP_DIR/billing-$(date +%F).dump"',   # \% is a percent sign
        "shell": "/bin/bash",
        "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "SHELL": "/bin/bash", "BACKUP_DIR": "/srv/backups"}}}
    assert dump["repeat"] == {"cron": "0 3 * * 1-5", "tz": "Europe/Lisbon"}
    assert dump["catchup"] == "none"       # as cron: what was missed while down is not run
    assert dump["date"] == "2026-03-30T02:00:00Z"   # Monday 03:00 Lisbon, summer time (UTC+1) from Sunday
    assert dump["imported_from"] == {"crontab": "user crontab", "line": 8, "text": USER_CRONTAB.splitlines()[7]}
    # A comment after a command is part of the command, as cron reads it.
    assert docs[10]["job"]["arguments"]["script"] == "/usr/local/bin/rotate-logs   # in the DST gap in spring"
    # 01:30 does not exist in Lisbon on Sunday 29 March (01:00 jumps to 02:00): that day the line
    # runs at 02:00 summer time, 01:00 UTC (Vixie's rule); the day before at 01:30 winter time.
    assert docs[10]["date"] == "2026-03-28T01:30:00Z"
    assert next_date("30 1 * * *", "Europe/Lisbon", datetime(2026, 3, 28, 12, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)
    assert next_date("30 1 * * *", "Europe/Lisbon", datetime(2026, 3, 29, 12, tzinfo=timezone.utc)) == \
        datetime(2026, 3, 30, 0, 30, tzinfo=timezone.utc)
    # CRON_TZ applies to the lines below it; the variables too, and none is lost.
    assert docs[15]["repeat"] == {"cron": "0 9 1 * *", "tz": "America/New_York"}
    assert docs[15]["date"] == "2026-04-01T13:00:00Z"
    assert docs[8]["repeat"]["tz"] == "Europe/Lisbon"
    assert docs[12]["repeat"] == {"cron": "@hourly", "tz": "Europe/Lisbon"}
    assert all("MAILTO" not in d["job"]["arguments"]["env"] for d in docs.values())


def test_lines_cron_can_run_and_a_task_cannot_are_listed_with_the_reason():
    table, _steps = plan(USER_CRONTAB)
    skipped = {s.line: s.reason for s in table.skipped}
    assert sorted(skipped) == [13, 17]
    assert skipped[13].startswith("@reboot runs once when the machine starts")
    assert skipped[17].startswith("a % in the command: cron turns it into a newline")
    [note] = table.notes
    assert note.line == 2 and note.note.startswith("MAILTO is cron's mail setting: not carried")


def test_a_system_crontab_carries_each_lines_user():
    table, steps = plan(SYSTEM_CRONTAB, system=True, source="/etc/crontab")
    by_line = {s.job.line: s.doc for s in steps}
    assert sorted(by_line) == [9, 10, 11, 12, 13, 14]
    assert by_line[9]["job"]["arguments"] == {
        "script": "cd / && run-parts --report /etc/cron.hourly", "shell": "/bin/sh", "user": "root",
        "env": {"PATH": "/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin", "SHELL": "/bin/sh"}}
    assert by_line[11]["repeat"]["cron"] == "47 6 * * 7"       # tabs between fields, 7 is Sunday
    assert by_line[13]["job"]["arguments"]["user"] == "www-data"
    assert by_line[14]["job"]["arguments"]["user"] == "postgres"
    skipped = {s.line: s.reason for s in table.skipped}
    assert sorted(skipped) == [15, 16]
    assert skipped[16].startswith("no user and command after the schedule")


def test_a_user_crontab_can_run_as_its_user():
    _table, steps = plan("0 3 * * * whoami\n", user="alice")
    assert steps[0].doc["job"]["arguments"]["user"] == "alice"


def test_a_schedule_cron_refuses_is_a_skipped_line():
    table, steps = plan("0 25 * * * echo late\n61 * * * * echo never\n0 0 30 2 * echo feb30\n")
    assert steps == []
    assert [s.reason for s in table.skipped] == [
        "schedule '0 25 * * *': hour 25 is not in 0-23",
        "schedule '61 * * * *': minute 61 is not in 0-59",
        "schedule '0 0 30 2 *': never runs: no month it names has day 30"]


def test_ids_are_stable_and_two_lines_with_one_command_are_two_tasks():
    _t, first = plan(USER_CRONTAB)
    _t, again = plan(USER_CRONTAB)
    assert [s.task_id for s in first] == [s.task_id for s in again]
    assert len({s.task_id for s in first}) == len(first)
    mirror = [s.task_id for s in first if "sync-mirror" in s.job.command]
    assert len(mirror) == 2 and all(i.startswith("cron-billing-sync-mirror-quiet-") for i in mirror)
    # Another worker or another file: other ids.
    table = crontab.parse_crontab(USER_CRONTAB)
    assert crontab.task_ids(table.jobs, worker="billing", source="other") != [s.task_id for s in first]


def as_stored(steps, status="scheduled"):
    """The documents as a worker holds them after taking them: its own fields added, the date moved."""
    return {s.task_id: {**s.doc, "_rev": "2-x", "status": status, "owner": {"process": "billing:h:0"},
                        "anchor": s.doc["date"], "occurrence": 3, "date": "2026-04-02T00:00:00Z"}
            for s in steps if s.doc}


def test_importing_the_same_crontab_again_changes_nothing():
    _t, first = plan(USER_CRONTAB)
    stored = as_stored(first)
    _t, again = plan(USER_CRONTAB, existing=stored, imported=stored.values())
    assert {s.kind for s in again} == {"same"}
    # Lines added above move the line numbers: still the same tasks, untouched.
    _t, shifted = plan("# a new comment\n\n" + USER_CRONTAB, existing=stored, imported=stored.values())
    assert {s.kind for s in shifted} == {"same"}


def test_an_edited_schedule_updates_its_task_and_an_edited_command_replaces_it():
    _t, first = plan(USER_CRONTAB)
    stored = as_stored(first)
    edited = USER_CRONTAB.replace("0 1 * * 0     find /tmp", "0 2 * * 0     find /tmp") \
                         .replace("/usr/local/bin/heartbeat.sh", "/usr/local/bin/heartbeat.sh --verbose")
    _t, steps = plan(edited, existing=stored, imported=stored.values())
    kinds = {s.kind: [x for x in steps if x.kind == s.kind] for s in steps}
    [update] = kinds["update"]
    assert update.detail == "schedule 0 1 * * 0 -> 0 2 * * 0"
    assert update.task_id == next(s.task_id for s in first if s.job.line == 11)
    # The worker is told to re-read it; its own record stays; the first run is the new schedule's.
    assert update.doc["status"] == "reschedule" and update.doc["owner"] == {"process": "billing:h:0"}
    assert update.doc["repeat"]["cron"] == "0 2 * * 0" and update.doc["date"] == "2026-03-29T01:00:00Z"
    [create] = kinds["create"]
    assert create.doc["job"]["arguments"]["script"] == "/usr/local/bin/heartbeat.sh --verbose"
    [cancel] = kinds["cancel"]
    assert cancel.doc["status"] == "cancel" and cancel.doc["job"]["arguments"]["script"] == "/usr/local/bin/heartbeat.sh"
    assert cancel.detail.startswith("no longer in the file (was line 12: @hourly")
    assert len(kinds["same"]) == 8


def test_a_paused_task_stays_paused_when_its_line_changes():
    _t, first = plan("0 3 * * * backup\n")
    stored = as_stored(first, status="paused")
    _t, [step] = plan("0 4 * * * backup\n", existing=stored, imported=stored.values())
    assert step.kind == "update" and step.doc["status"] == "paused"


def test_environment_changes_update_the_tasks_below_them():
    _t, first = plan("A=1\n0 3 * * * backup\n")
    stored = as_stored(first)
    _t, [step] = plan("A=2\n0 3 * * * backup\n", existing=stored, imported=stored.values())
    assert step.kind == "update" and step.detail == "environment A"


@pytest.mark.parametrize("line,reason", [
    ("0 3 * * *", "not a job line: five time fields and a command expected"),
    ("@weekly", "no command after the schedule"),
    ("@fortnightly run", "@fortnightly is not a schedule cron knows"),
    ("0 3 * * * printf '%s' x", "a % in the command"),
])
def test_lines_that_are_not_jobs(line, reason):
    table = crontab.parse_crontab(line + "\n")
    assert table.jobs == [] and table.skipped[0].reason.startswith(reason)


def test_random_delay_becomes_jitter():
    _t, [step] = plan("RANDOM_DELAY=10\n0 3 * * * backup\n")
    assert step.doc["jitter"] == "10m"


def test_a_line_put_back_revives_its_canceled_task():
    _t, first = plan("0 3 * * * backup\n")
    stored = as_stored(first, status="canceled")
    _t, [step] = plan("0 3 * * * backup\n", existing=stored, imported=stored.values())
    assert step.kind == "update" and step.detail == "was canceled: starts again"
    assert step.doc["status"] == "waiting" and "owner" not in step.doc and "anchor" not in step.doc


def test_system_files_are_known_by_their_place():
    from afterd.cli.cronimport import is_system_file

    assert is_system_file("/etc/crontab") and is_system_file("/etc/cron.d/backup")
    assert not is_system_file("/home/ana/crontab.txt") and not is_system_file("/etc/cron.daily/logrotate")


def test_a_disabled_crontab_keeps_what_was_not_imported_and_imports_the_same():
    """`--print-disabled`: imported lines commented out for cron, but read by the import again."""
    _t, first = plan(USER_CRONTAB)
    moved = {s.job.line for s in first}
    text = crontab.disabled(USER_CRONTAB, moved)
    lines = text.splitlines()
    assert lines[7] == "# after: " + USER_CRONTAB.splitlines()[7]
    assert lines[12] == "@reboot       /usr/local/bin/start-tunnel"      # not imported: cron keeps it
    assert lines[1] == "MAILTO=ops@example.org" and lines[13] == "CRON_TZ=America/New_York"
    assert all(lines[n - 1].startswith("# after: ") == (n in moved) for n in range(1, len(lines) + 1)
               if not USER_CRONTAB.splitlines()[n - 1].startswith("#"))
    stored = as_stored(first)
    _t, again = plan(text, existing=stored, imported=stored.values())
    assert {s.kind for s in again} == {"same"} and len(again) == len(first)
    # An edit in a disabled line is an edit all the same.
    _t, edited = plan(text.replace("# after: 0 1 * * 0", "# after: 0 2 * * 0"), existing=stored,
                      imported=stored.values())
    assert [s.detail for s in edited if s.kind == "update"] == ["schedule 0 1 * * 0 -> 0 2 * * 0"]
