"""`after import crontab` against a real server, and a real worker running what it imported:
a realistic user crontab and a system /etc/crontab, dry run then --apply, imported twice,
edited; an imported every-minute line run by a worker, as its user, with its variables."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from crontabs import SYSTEM_CRONTAB, USER_CRONTAB
from helpers import wait_for
from test_engine import worker  # noqa: F401 (fixture)
from test_engine import killed_at_end  # noqa: F401 (a fixture worker uses)
from workers import ROOT


def after_import(couch_url, db_name, *args, stdin=None):
    env = {**os.environ, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": db_name, "AFTER_CONFIG": os.devnull,
           "TZ": "Europe/Lisbon"}
    return subprocess.run([sys.executable, "-m", "afterd", "import", "crontab", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60)


def imported(couch, worker="cron"):
    return {d["_id"]: d for d in couch.find({"worker": worker})}


def init(couch_url, db_name):
    env = {**os.environ, "AFTER_COUCHDB_URL": couch_url, "AFTER_DATABASE": db_name, "AFTER_CONFIG": os.devnull}
    result = subprocess.run([sys.executable, "-m", "afterd", "init"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_user_crontab_is_printed_then_imported_then_left_alone(couch, couch_url, db_name):
    init(couch_url, db_name)   # the validation refuses what it must: the import passes through it
    # Given a user's crontab, piped in as `crontab -l | after import crontab - --worker cron`
    dry = after_import(couch_url, db_name, "-", "--worker", "cron", stdin=USER_CRONTAB)
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout
    assert out.startswith("user crontab (user format) -> worker cron, times in Europe/Lisbon")
    assert out.count("\n  create  cron-cron-") == 10
    assert "skip    line 13: @reboot" in out and "skip    line 17: 5 4 * * sun" in out
    assert "note    line 2: MAILTO=ops@example.org" in out
    assert out.endswith("10 to create, 0 to update, 0 to cancel, 0 unchanged, 2 lines not imported.\n"
                        "Nothing written: run again with --apply to do this.\n")
    assert imported(couch) == {}   # a dry run writes nothing

    # When applied
    applied = after_import(couch_url, db_name, "-", "--worker", "cron", "--apply", stdin=USER_CRONTAB)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.endswith("10 created, 0 updated, 0 canceled, 0 unchanged, 2 lines not imported.\n")
    docs = imported(couch)
    assert len(docs) == 10
    dump = next(d for d in docs.values() if d["imported_from"]["line"] == 8)
    assert dump["status"] == "waiting" and dump["repeat"] == {"cron": "0 3 * * 1-5", "tz": "Europe/Lisbon"}
    assert dump["job"]["name"] == "shell" and dump["job"]["arguments"]["shell"] == "/bin/bash"
    assert dump["job"]["arguments"]["env"]["BACKUP_DIR"] == "/srv/backups"
    assert {d["repeat"]["tz"] for d in docs.values() if d["imported_from"]["line"] > 14} == {"America/New_York"}

    # Then importing it again changes nothing
    revs = {i: d["_rev"] for i, d in docs.items()}
    again = after_import(couch_url, db_name, "-", "--worker", "cron", "--apply", stdin=USER_CRONTAB)
    assert again.returncode == 0, again.stderr
    assert "0 created, 0 updated, 0 canceled, 10 unchanged" in again.stdout
    assert {i: d["_rev"] for i, d in imported(couch).items()} == revs

    # Then the crontab, its imported lines commented out for cron, imports as the same
    disabled = after_import(couch_url, db_name, "-", "--worker", "cron", "--print-disabled", stdin=USER_CRONTAB)
    assert disabled.returncode == 0 and disabled.stderr == ""
    assert disabled.stdout.count("\n# after: ") == 10 and "\n@reboot " in disabled.stdout
    again = after_import(couch_url, db_name, "-", "--worker", "cron", "--apply", stdin=disabled.stdout)
    assert "0 created, 0 updated, 0 canceled, 10 unchanged" in again.stdout
    both = after_import(couch_url, db_name, "-", "--worker", "cron", "--apply", "--print-disabled", stdin="")
    assert both.returncode == 2 and "import first with --apply" in both.stderr

    # And an edited schedule updates its task; a removed line's task is canceled
    edited = USER_CRONTAB.replace("0 1 * * 0     find /tmp", "0 2 * * 0     find /tmp") \
                         .replace("@hourly       /usr/local/bin/heartbeat.sh\n", "")
    changed = after_import(couch_url, db_name, "-", "--worker", "cron", "--apply", stdin=edited)
    assert changed.returncode == 0, changed.stderr
    assert "changes: schedule 0 1 * * 0 -> 0 2 * * 0" in changed.stdout
    assert "0 created, 1 updated, 1 canceled, 8 unchanged" in changed.stdout
    now = imported(couch)
    find = next(d for d in now.values() if "find /tmp" in d["job"]["arguments"]["script"])
    assert find["repeat"]["cron"] == "0 2 * * 0" and find["_id"] in docs
    beat = next(d for d in now.values() if d["job"]["arguments"]["script"] == "/usr/local/bin/heartbeat.sh")
    assert beat["status"] == "cancel"


def test_a_system_crontab_keeps_each_lines_user(couch, couch_url, db_name, tmp_path):
    init(couch_url, db_name)
    path = tmp_path / "crontab"
    path.write_text(SYSTEM_CRONTAB)
    result = after_import(couch_url, db_name, str(path), "--system", "--worker", "cron", "--apply")
    assert result.returncode == 0, result.stderr
    assert "6 created" in result.stdout and "2 lines not imported" in result.stdout
    users = sorted(d["job"]["arguments"]["user"] for d in imported(couch).values())
    assert users == ["postgres", "root", "root", "root", "root", "www-data"]
    assert all(d["imported_from"]["crontab"] == str(path) for d in imported(couch).values())


def test_a_bad_file_is_one_line_and_writes_nothing(couch, couch_url, db_name, tmp_path):
    result = after_import(couch_url, db_name, str(tmp_path / "nope"), "--worker", "cron")
    assert result.returncode == 1 and result.stderr.startswith("after: ") and len(result.stderr.splitlines()) == 1
    result = after_import(couch_url, db_name, "-", "--worker", "cron", "--tz", "Mars/Olympus", stdin="* * * * * x\n")
    assert result.returncode == 2 and "--tz: tz 'Mars/Olympus' is not a known IANA time zone" in result.stderr


def test_a_worker_runs_an_imported_line_as_its_user_with_its_variables(couch, couch_url, db_name, worker):
    # Given a system crontab line due every minute, as another user when the tests run as root
    init(couch_url, db_name)
    out = Path(tempfile.mkdtemp(prefix="after-cron-"))
    out.chmod(0o777)
    user = "nobody" if os.geteuid() == 0 else None
    line = ('SHELL=/bin/bash\nGREETING="hello from cron"\n'
            f'* * * * * {user or ""} echo "$GREETING as $(id -un) in $PWD, $(date +\\%H)h" >> {out}/ran.txt\n')
    args = ["--system"] if user else []
    result = after_import(couch_url, db_name, "-", "--worker", "cron", "--apply", *args, stdin=line)
    assert result.returncode == 0, result.stderr
    [task_id] = imported(couch)
    first = couch.get(task_id)["date"]
    assert first.endswith(":00Z")
    # When a worker runs (from the checkout's jobs folder: its shell job)
    w = worker("cron", jobs_dir=ROOT / "jobs").start()
    # Then the command ran at the minute, through bash, as that user, with the line's variables
    wait_for(lambda: (out / "ran.txt").exists(), 90, f"the imported line to run at {first}:\n{w.log_tail()}")
    text = (out / "ran.txt").read_text()
    who = user or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert text.startswith(f"hello from cron as {who} in ")
    done = couch.get(task_id)
    wait_for(lambda: couch.get(task_id).get("runs") == 1, 20, "the run recorded")
    done = couch.get(task_id)
    # And the worker wrote the next occurrence, a minute later
    assert done["status"] == "scheduled" and done["date"] > first and done["date"].endswith(":00Z")
    assert done["last_run"]["status"] == "done", json.dumps(done["last_run"])
    assert w.stop() == 0
