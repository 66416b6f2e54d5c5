"""The example jobs in jobs/, each run for real the way a worker's child runs it
(afterd.jobapi: the module executed from its file, run(task) called, the outcome recorded)."""

import http.server
import json
import threading
from pathlib import Path

import pytest
import requests

from afterd.jobapi import JobTask, prepare_module, run_job

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"


def run_example(job, arguments, *, date="2026-12-01T03:00:00Z", task_id="task-1", doc=None):
    """Given the example job file, when a worker runs it with these arguments, then this outcome."""
    path = JOBS_DIR / f"{job}.py"
    code = compile(path.read_bytes(), str(path), "exec")
    task = JobTask({"id": task_id, "worker": "test", "date": date, "arguments": arguments,
                    "doc": doc or {"_id": task_id}}, job)
    module = prepare_module(f"after_job_{job}", str(path))
    return run_job(code, module, str(path), task, None)


# ---- shell -------------------------------------------------------------------------------

def test_shell_records_exit_code_and_output():
    outcome = run_example("shell", ["/bin/echo", "hello", "$HOME"])
    assert outcome["ok"], outcome
    # No shell: "$HOME" reaches echo untouched.
    assert outcome["result"] == {"exit_code": 0, "stdout_tail": "hello $HOME\n", "stderr_tail": ""}


def test_shell_non_zero_exit_fails_the_task():
    outcome = run_example("shell", ["/bin/false"])
    assert not outcome["ok"]
    assert "/bin/false exited with 1" in outcome["error"]["message"]


def test_shell_failure_message_carries_stderr_tail():
    outcome = run_example("shell", {"command": ["/bin/sh", "-c", "echo disk full >&2; exit 3"]})
    assert not outcome["ok"]
    assert outcome["error"]["message"] == "/bin/sh exited with 3: disk full"


def test_shell_refuses_a_command_string():
    outcome = run_example("shell", {"command": "echo hi"})
    assert not outcome["ok"]
    assert "list of strings" in outcome["error"]["message"]



def test_shell_runs_a_script_through_the_shell_with_crons_environment(tmp_path, monkeypatch):
    """What `after import crontab` writes: a crontab line's command, its variables, as cron runs it."""
    monkeypatch.setenv("WORKER_SECRET", "not for jobs")
    outcome = run_example("shell", {"script": 'echo "$GREETING from $0" | tr a-z A-Z; echo "[$WORKER_SECRET]" "$PATH"; pwd',
                                    "env": {"GREETING": "hello"}})
    assert outcome["ok"], outcome
    lines = outcome["result"]["stdout_tail"].splitlines()
    assert lines[0] == "HELLO FROM /BIN/SH"
    # The worker's environment is not passed on; PATH is cron's; the folder is the account's home.
    assert lines[1] == "[] /usr/bin:/bin"
    import pwd, os
    assert lines[2] == os.path.realpath(pwd.getpwuid(os.geteuid()).pw_dir) or lines[2] == pwd.getpwuid(os.geteuid()).pw_dir


def test_shell_script_starts_in_the_home_env_sets(tmp_path):
    outcome = run_example("shell", {"script": "pwd; echo $HOME", "env": {"HOME": str(tmp_path)}})
    assert outcome["result"]["stdout_tail"].splitlines() == [str(tmp_path), str(tmp_path)]


def test_shell_script_with_another_shell_and_path():
    outcome = run_example("shell", {"script": "echo $BASH_VERSION | cut -c1; exit 4", "shell": "/bin/bash",
                                    "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"}})
    assert not outcome["ok"]
    assert outcome["error"]["message"].startswith("/bin/bash -c 'echo $BASH_VERSION | cut -c1; exit 4' exited with 4: 5")


def test_shell_refuses_another_user_unless_the_worker_is_root():
    import os
    if os.geteuid() == 0:
        pytest.skip("runs as root here: switching users is allowed")
    outcome = run_example("shell", {"script": "id", "user": "root"})
    assert not outcome["ok"]
    assert "cannot run as root: the worker runs as" in outcome["error"]["message"]
    outcome = run_example("shell", {"script": "id", "user": "no-such-user-here"})
    assert outcome["error"]["message"] == "cannot run as no-such-user-here: no such user on this host"


def test_shell_switches_to_the_user_when_the_worker_is_root():
    import os
    if os.geteuid() != 0:
        pytest.skip("not root here: the refusal is tested instead")
    outcome = run_example("shell", {"script": "id -un; echo $HOME $LOGNAME", "user": "nobody", "env": {}})
    assert outcome["ok"], outcome
    assert outcome["result"]["stdout_tail"].splitlines() == ["nobody", "/nonexistent nobody"]


def test_shell_runs_as_its_own_user_without_switching():
    import getpass
    outcome = run_example("shell", {"script": "id -un", "user": getpass.getuser()})
    assert outcome["ok"], outcome
    assert outcome["result"]["stdout_tail"].strip() == getpass.getuser()


def test_shell_refuses_script_and_command_together():
    outcome = run_example("shell", {"script": "echo hi", "command": ["/bin/echo"]})
    assert "not both" in outcome["error"]["message"]

# ---- http_request ----------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):
        self.answer()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.answer(self.rfile.read(length).decode())

    def answer(self, body=""):
        Handler.seen.append((self.command, self.path, body, self.headers.get("Authorization")))
        status = 500 if self.path.startswith("/fail") else 200
        payload = b"x" * 1000 + b"END" if self.path.startswith("/long") else b"boom" if status == 500 else b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_request_records_status_and_body(http_url):
    outcome = run_example("http_request", {"url": f"{http_url}/hook", "method": "POST", "json": {"a": 1}})
    assert outcome["ok"], outcome
    assert outcome["result"]["status"] == 200
    assert outcome["result"]["body_tail"] == "ok"
    assert Handler.seen[0][:3] == ("POST", "/hook", '{"a": 1}')


def test_http_request_keeps_only_the_tail_of_a_long_body(http_url):
    outcome = run_example("http_request", [f"{http_url}/long"])
    assert outcome["ok"], outcome
    assert len(outcome["result"]["body_tail"]) == 500
    assert outcome["result"]["body_tail"].endswith("END")


def test_http_request_non_2xx_fails_without_the_password(http_url):
    url = http_url.replace("http://", "http://ops:s3cret-pw@") + "/fail"
    outcome = run_example("http_request", {"url": url})
    assert not outcome["ok"]
    message = outcome["error"]["message"]
    assert "answered 500: boom" in message
    assert "s3cret-pw" not in json.dumps(outcome)
    assert Handler.seen[0][3].startswith("Basic ")   # the credentials were used, as basic auth


def test_http_request_unreachable_fails_in_one_line():
    outcome = run_example("http_request", {"url": "http://u:s3cret-pw@127.0.0.1:9/x", "timeout_s": 5})
    assert not outcome["ok"]
    assert "failed: ConnectionError" in outcome["error"]["message"]
    assert "s3cret-pw" not in json.dumps(outcome)


# ---- notify_url ----------------------------------------------------------------------------------

def test_notify_url_posts_what_failed_as_a_follow_up(http_url):
    """The follow-up an on_error template creates: its parent says which task failed and why."""
    from afterd.chains import follow_up_doc, parse_template
    from afterd.task import parse_date

    parent = {"_id": "billing-1234", "worker": "manobi", "date": "2026-12-01T03:00:00Z", "status": "error",
              "job": {"name": "generate_billing", "arguments": ["1234"]},
              "error": {"type": "RuntimeError", "message": "card declined", "traceback": "..."},
              "on_error": {"job": {"name": "notify_url", "arguments": {"url": f"{http_url}/ops"}}}}
    follow_up = follow_up_doc(parent, parse_template(parent["on_error"], "on_error"),
                              "billing-1234@2026-12-01T03:00:00Z#0", "error", parse_date("2026-12-01T03:00:05Z"))
    outcome = run_example("notify_url", follow_up["job"]["arguments"], task_id=follow_up["_id"], doc=follow_up)
    assert outcome["ok"], outcome
    method, path, body, _auth = Handler.seen[0]
    sent = json.loads(body)
    assert (method, path) == ("POST", "/ops")
    assert sent["text"] == "task billing-1234 ended error: RuntimeError: card declined"
    assert sent["task"] == follow_up["_id"] and sent["parent"]["id"] == "billing-1234"
    assert outcome["result"] == {"status": 200, "sent": sent["text"]}


def test_notify_url_message_and_payload(http_url):
    outcome = run_example("notify_url", {"url": f"{http_url}/hook", "message": "backup done",
                                         "payload": {"channel": "#ops", "text": "overridden"}})
    assert outcome["ok"], outcome
    assert json.loads(Handler.seen[0][2]) == {"channel": "#ops", "text": "backup done", "task": "task-1"}


def test_notify_url_list_arguments(http_url):
    outcome = run_example("notify_url", [f"{http_url}/hook", "hi"])
    assert outcome["ok"], outcome
    assert json.loads(Handler.seen[0][2])["text"] == "hi"


def test_notify_url_non_2xx_fails_without_the_password(http_url):
    url = http_url.replace("http://", "http://ops:s3cret-pw@") + "/fail"
    outcome = run_example("notify_url", {"url": url, "message": "x"})
    assert not outcome["ok"]
    assert "answered 500: boom" in outcome["error"]["message"]
    assert "s3cret-pw" not in json.dumps(outcome)
    assert Handler.seen[0][3].startswith("Basic ")


@pytest.mark.parametrize("arguments,says", [
    ({"url": "ftp://x/y"}, "not an http(s) URL"), ({}, "arguments: "), ("x", "arguments: "),
    ({"url": "http://127.0.0.1:9/x", "payload": [1]}, "payload: "),
])
def test_notify_url_bad_arguments(arguments, says):
    outcome = run_example("notify_url", arguments)
    assert not outcome["ok"] and says in outcome["error"]["message"]


def test_notify_url_unreachable_fails_in_one_line():
    outcome = run_example("notify_url", {"url": "http://127.0.0.1:9/x", "timeout_s": 5})
    assert not outcome["ok"]
    assert "failed: ConnectionError" in outcome["error"]["message"]


# ---- generate_billing ----------------------------------------------------------------------------

def test_generate_billing_writes_an_invoice(tmp_path):
    outcome = run_example("generate_billing", ["1234", str(tmp_path)])
    assert outcome["ok"], outcome
    path = Path(outcome["result"]["path"])
    assert path.parent == tmp_path
    invoice = json.loads(path.read_text())
    assert invoice["customer_id"] == "1234"
    assert invoice["total_cents"] == outcome["result"]["total_cents"] == 1500


def test_generate_billing_rerun_of_one_occurrence_rewrites_the_same_invoice(tmp_path):
    first = run_example("generate_billing", {"customer_id": "c/1", "folder": str(tmp_path),
                                             "items": [{"description": "a", "amount_cents": 250},
                                                       {"description": "b", "amount_cents": 100}]})
    second = run_example("generate_billing", ["c/1", str(tmp_path)])
    assert first["ok"] and second["ok"]
    assert first["result"]["total_cents"] == 350
    assert first["result"]["path"] == second["result"]["path"]
    assert [p.name for p in tmp_path.iterdir()] == ["invoice-c_1-20261201T030000Z.json"]


def test_generate_billing_uses_after_billing_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AFTER_BILLING_DIR", str(tmp_path / "bills"))
    outcome = run_example("generate_billing", ["42"])
    assert outcome["ok"], outcome
    assert Path(outcome["result"]["path"]).parent == tmp_path / "bills"


def test_generate_billing_without_customer_fails():
    outcome = run_example("generate_billing", [])
    assert not outcome["ok"]
    assert "customer_id" in outcome["error"]["message"]


# ---- start_replication ----------------------------------------------------------------------------

def test_start_replication_copies_documents(couch_url, db_name, monkeypatch):
    monkeypatch.setenv("AFTER_COUCHDB_URL", couch_url)
    monkeypatch.setenv("AFTER_CONFIG", "/dev/null")   # not this machine's /etc/after/after.conf
    requests.put(f"{couch_url}/{db_name}", timeout=10).raise_for_status()
    requests.put(f"{couch_url}/{db_name}/invoice-1", json={"total": 12}, timeout=10).raise_for_status()
    target = db_name + "-copy"
    try:
        outcome = run_example("start_replication", {"source": db_name, "target": target,
                                                    "create_target": True})
        assert outcome["ok"], outcome
        assert outcome["result"].get("ok") is True
        copied = requests.get(f"{couch_url}/{target}/invoice-1", timeout=10).json()
        assert copied["total"] == 12
    finally:
        requests.delete(f"{couch_url}/{target}", timeout=10)


def test_start_replication_from_an_unreachable_source_fails(private_couch_server, db_name, monkeypatch):
    # (pouchdb-server creates a missing local source on the fly, CouchDB answers 404:
    # a source on a closed port fails on both.) A server of this test's own: pouchdb-server's
    # replicator can crash the whole server on the refused connection, after answering.
    monkeypatch.setenv("AFTER_COUCHDB_URL", private_couch_server.url)
    monkeypatch.setenv("AFTER_CONFIG", "/dev/null")
    outcome = run_example("start_replication", ["http://u:s3cret-pw@127.0.0.1:9/gone", db_name])
    assert not outcome["ok"]
    assert outcome["error"]["message"].startswith("replication http://u:***@127.0.0.1:9/gone -> ")
    assert "s3cret-pw" not in json.dumps(outcome)


def test_start_replication_unreachable_server_hides_the_password(monkeypatch):
    monkeypatch.setenv("AFTER_COUCHDB_URL", "http://admin:s3cret-pw@127.0.0.1:9")
    monkeypatch.setenv("AFTER_CONFIG", "/dev/null")
    outcome = run_example("start_replication", ["a", "b"])
    assert not outcome["ok"]
    assert "unreachable" in outcome["error"]["message"]
    assert "s3cret-pw" not in json.dumps(outcome)
