"""`after init` installs the console and the roles; `after console` serves and proxies.
No browser here: plain HTTP against the module's pouchdb-server (conftest.py)."""

import os
import subprocess
import sys
import threading
import uuid

import requests

from console_harness import ADMIN, ADMIN_PASSWORD, ROOT, ProxyThread, admin_url, after_cli
from helpers import wait_for



def task(worker="nobody", **extra):
    return {"worker": worker, "date": "2030-01-01T00:00:00Z", "status": "waiting",
            "job": {"name": "record", "arguments": []}, **extra}


def test_init_on_a_database_with_tasks_installs_the_console_without_touching_tasks(server, database):
    # Given a database with tasks and an older design document without the console
    db = f"{server.url}/{database}"
    ids = []
    for i in range(3):
        r = requests.post(db, json=task(note=i), auth=ADMIN, timeout=10)
        assert r.status_code == 201, r.text
        ids.append((r.json()["id"], r.json()["rev"]))
    design = requests.get(f"{db}/_design/after", auth=ADMIN, timeout=10).json()
    old = {k: v for k, v in design.items() if k != "_attachments"}
    old["version"] = "old"
    assert requests.put(f"{db}/_design/after", json=old, auth=ADMIN, timeout=10).status_code == 201
    assert requests.get(f"{db}/_design/after/console.html", auth=ADMIN, timeout=10).status_code == 404

    # When `after init` runs again
    result = after_cli("init", url=admin_url(server), database=database)

    # Then the console is back, attached, and no task changed revision
    assert result.returncode == 0, result.stderr
    assert "installed the design document" in result.stdout
    page = requests.get(f"{db}/_design/after/console.html", auth=ADMIN, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'src="console.js"' in page.text and "<script>" not in page.text
    for doc_id, rev in ids:
        assert requests.get(f"{db}/{doc_id}", auth=ADMIN, timeout=10).json()["_rev"] == rev
    # and init says where the console is and how to add a user
    assert f"/{database}/_design/after/console.html" in result.stdout
    assert "_users/org.couchdb.user:NAME" in result.stdout and "after_reader" in result.stdout
    assert ADMIN_PASSWORD not in result.stdout + result.stderr


def test_init_sets_both_roles_and_couchdb_refuses_the_reader(server, database):
    db = f"{server.url}/{database}"
    security = requests.get(f"{db}/_security", auth=ADMIN, timeout=10).json()
    assert sorted(security["members"]["roles"]) == ["after", "after_reader"]
    # The reader reads...
    assert requests.get(f"{db}/_design/after/_view/by_status", auth=("viewer", "view-pw"), timeout=10).ok
    # ...and every write it tries is refused by validate_doc_update, with a reason.
    refused = requests.post(db, json=task(), auth=("viewer", "view-pw"), timeout=10)
    assert refused.status_code == 403 and "read-only" in refused.json()["reason"], refused.text
    made = requests.post(db, json=task(), auth=("operator", "op-pw"), timeout=10)
    assert made.status_code == 201, made.text
    doc = requests.get(f"{db}/{made.json()['id']}", auth=("viewer", "view-pw"), timeout=10).json()
    delete = requests.delete(f"{db}/{doc['_id']}", params={"rev": doc["_rev"]}, auth=("viewer", "view-pw"), timeout=10)
    assert delete.status_code == 403, delete.text
    cancel = requests.put(f"{db}/{doc['_id']}", json={**doc, "status": "cancel"}, auth=("viewer", "view-pw"), timeout=10)
    assert cancel.status_code == 403, cancel.text
    assert requests.put(f"{db}/{doc['_id']}", json={**doc, "status": "cancel"}, auth=("operator", "op-pw"),
                        timeout=10).status_code == 201


def test_init_console_csp_says_it_is_server_wide_and_how_to_undo(server, database):
    result = after_cli("init", "--console-csp", url=admin_url(server), database=database)
    assert result.returncode == 0, result.stderr
    assert "server-wide" in result.stdout and "EVERY database" in result.stdout
    assert "curl -X DELETE" in result.stdout and "attachments_header_value" in result.stdout
    # CouchDB keeps it at /_node/_local/_config; pouchdb-server, which has no such path, at /_config.
    answers = [requests.get(f"{server.url}{prefix}/csp/attachments_header_value", auth=ADMIN, timeout=10)
               for prefix in ("/_node/_local/_config", "/_config")]
    value = next(r.json() for r in answers if r.ok)
    assert "script-src 'self'" in value and "object-src 'none'" in value and "frame-ancestors 'none'" in value
    assert "unsafe-inline" not in value
    # Without the option nothing on the server's settings is changed, nor said to be.
    plain = after_cli("init", url=admin_url(server), database=database)
    assert "--console-csp: setting" not in plain.stdout and "set (it was" not in plain.stdout


def test_after_console_serves_the_files_and_proxies_only_session_and_the_database(server, database):
    with ProxyThread(admin_url(server), database) as proxy:
        base = f"http://127.0.0.1:{proxy.server_address[1]}"
        page = requests.get(proxy.address, timeout=10)
        assert page.status_code == 200 and "console.js" in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert requests.get(f"{base}/", timeout=10, allow_redirects=False).headers["Location"].endswith("console.html")
        # The proxy adds no credentials: anonymous is refused by CouchDB itself...
        assert requests.get(f"{base}/{database}", timeout=10).status_code == 401
        # ...a session made through it works...
        s = requests.Session()
        assert s.post(f"{base}/_session", json={"name": "operator", "password": "op-pw"}, timeout=10).ok
        assert s.get(f"{base}/{database}", timeout=10).json()["db_name"] == database
        # ...and nothing outside /_session and the database is reachable.
        for path in ("/_config/admins", "/_users/_all_docs", "/_all_dbs", f"/{database}/../_config"):
            assert s.get(base + path, timeout=10).status_code == 404, path


def test_the_after_console_command_prints_its_address_and_serves_the_page(server, database):
    proc = subprocess.Popen([sys.executable, "-m", "afterd", "console", "--port", "0"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "AFTER_COUCHDB_URL": admin_url(server), "AFTER_CONFIG": os.devnull,
                                 "AFTER_DATABASE": database})
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(lines) >= 2 or proc.poll() is not None, 20, "after console to print its address")
        line, rest = (lines + ["", ""])[:2]
        assert line.startswith("after console: open http://127.0.0.1:"), "".join(lines)
        address = line.split("open ", 1)[1].strip()
        assert address.endswith(f"/{database}/_design/after/console.html")
        assert requests.get(address, timeout=10).status_code == 200
        assert ADMIN_PASSWORD not in line + rest and "changing nothing" in rest
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_the_design_install_a_worker_does_carries_the_console(server):
    """A worker installs _design/after with couch.ensure_design(), as after init does: the
    console's files come with it, and a changed file changes the design's version."""
    from afterd.console import install
    from afterd.couch import Couch
    from afterd.design import design_doc

    couch = Couch(admin_url(server), "tasks-" + uuid.uuid4().hex[:8])
    couch.ensure_database()
    assert couch.ensure_design() is True
    for name, kind in install.FILES.items():
        r = requests.get(f"{server.url}/{couch.database}/_design/after/{name}", auth=ADMIN, timeout=10)
        assert r.status_code == 200 and r.content == install.read_file(name), name
        assert r.headers["Content-Type"].split(";")[0] == kind.split(";")[0]
    before = design_doc()["version"]
    original = install.read_file
    try:
        install.read_file = lambda name: original(name) + (b"\n" if name == "console.css" else b"")
        assert design_doc()["version"] != before
    finally:
        install.read_file = original
