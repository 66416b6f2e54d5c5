"""What `after init` and a worker's design install need for the console.

- attachments(): the static files as `_attachments` of `_design/after` (base64 inline), so
  the one PUT that installs or upgrades the design document carries them; tasks are never
  touched.
- security(): `_security` with the acting role and the read-only role. Reading is CouchDB's
  membership; writing is refused by validate_doc_update to members without the acting role.
- the login page: a database with members (the tasks database) shows its design's pages
  only to a browser with a session; anonymous gets CouchDB's JSON 401, not a form (CouchDB
  redirects a 401 to its authentication_redirect only for a client that does not accept
  JSON, and a browser's `*/*` does). So login.html lives in LOGIN_DATABASE, readable by
  everyone, holding nothing but these static files: its validate_doc_update refuses every
  write but a server admin's (design documents are admins' anyway). After /_session it
  opens /<db>/_design/after/console.html, which CouchDB then serves.
- CSP: Apache CouchDB 3 serves attachments with `Content-Security-Policy: sandbox`, so an
  attached page runs no script. set_attachments_csp() replaces that, server-wide, with
  CONSOLE_CSP, only when the operator asked (`after init --console-csp`).
"""

import base64
import hashlib
import json
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).parent

# name -> content type, as CouchDB will serve it.
FILES = {
    "console.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console-lib.mjs": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
PAGE = "console.html"
LOGIN_DATABASE = "after-login"
LOGIN_FILES = {
    "login.html": "text/html; charset=utf-8",
    "login.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
LOGIN_PAGE = "login.html"
# The login database's whole validation: a public database takes writes from anyone
# unless its validate_doc_update refuses them.
LOGIN_VALIDATION = """function (newDoc, oldDoc, userCtx) {
  if ((userCtx.roles || []).indexOf("_admin") < 0) {
    throw({forbidden: "after-login holds after's login page only: only a server admin writes here"});
  }
}"""

ACTING_ROLE = "after"            # may add, cancel, reschedule, delete tasks (and workers run as it)
READER_ROLE = "after_reader"     # sees everything, changes nothing

# Scripts, styles, images and requests from the same origin only; no inline script, no
# plugins, no framing, no base or form target elsewhere. Kept to what the console needs.
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
               "form-action 'self'")
CSP_SECTION, CSP_KEY = "csp", "attachments_header_value"


def read_file(name: str) -> bytes:
    return (HERE / name).read_bytes()


def attachments(files: dict = FILES) -> dict:
    return {name: {"content_type": kind, "data": base64.b64encode(read_file(name)).decode("ascii")}
            for name, kind in files.items()}


def login_design() -> dict:
    """_design/after of LOGIN_DATABASE: the login page and a validation that lets only
    server admins write; `version` a hash of the rest, as design_doc() does."""
    body = {"_id": "_design/after", "language": "javascript", "validate_doc_update": LOGIN_VALIDATION,
            "_attachments": attachments(LOGIN_FILES)}
    body["version"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return body


def public_security() -> dict:
    """No members: CouchDB lets everyone read (its default for new databases is admins only)."""
    return {"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}}


def install_login(couch) -> None:
    """Create LOGIN_DATABASE if needed, make it readable by everyone, install its design."""
    login = couch.for_database(LOGIN_DATABASE)
    login.ensure_database()
    login.ensure_design(login_design())   # before opening it: never public and writable
    login.put_security(public_security())


def security() -> dict:
    """Members by role: CouchDB refuses everyone else (pouchdb-server's _find ignores it)."""
    return {"admins": {"names": [], "roles": []},
            "members": {"names": [], "roles": [ACTING_ROLE, READER_ROLE]}}


def page_path(database: str) -> str:
    return f"/{quote(database, safe='')}/_design/after/{PAGE}"


def login_path(database: str) -> str:
    return f"/{LOGIN_DATABASE}/_design/after/{LOGIN_PAGE}?db={quote(database, safe='')}"


def scripts_blocked(couch) -> bool:
    """Whether the server serves attachments with a CSP sandbox that stops scripts (Apache
    CouchDB 3's default): asked of the login page itself, as a browser would get it."""
    headers = couch.head_headers(f"/{LOGIN_DATABASE}/_design/after/{LOGIN_PAGE}")
    policy = (headers.get("Content-Security-Policy") or "").lower()
    return "sandbox" in policy and "allow-scripts" not in policy


def csp_warning(base_url: str) -> str:
    return (f"--console-csp: setting [{CSP_SECTION}] {CSP_KEY} on the server {base_url}.\n"
            "  This is server-wide: the attachments of EVERY database on this server are served\n"
            "  with this policy instead of CouchDB's default 'sandbox':\n"
            f"    {CONSOLE_CSP}\n"
            "  It lets same-origin scripts in attached pages run (the console needs that): no\n"
            "  inline script, no plugins, no framing, but every attached .html and .js may run.\n"
            "  So ANY USER WHO CAN WRITE AN ATTACHMENT IN ANY DATABASE OF THIS SERVER CAN RUN\n"
            "  SCRIPT AS WHOEVER OPENS IT, ADMINS INCLUDED (with their session: config, users,\n"
            "  every database). after's databases refuse such attachments from non-admins; other\n"
            "  databases on this server may not. Use it only where every writer is trusted.\n"
            "  To undo it (back to CouchDB's default):\n"
            f"    curl -X DELETE -u ADMIN {base_url}/_node/_local/_config/{CSP_SECTION}/{CSP_KEY}\n"
            "  To leave the server alone instead, use `after console`.")


def set_attachments_csp(couch) -> str:
    """PUT the console's policy into the server config; returns the previous value ('' if unset)."""
    return couch.put_config(CSP_SECTION, CSP_KEY, CONSOLE_CSP)


def user_help(base_url: str, database: str) -> str:
    return ("add a console user (an admin's user:password; roles: "
            f"'{ACTING_ROLE}' acts, '{READER_ROLE}' only reads):\n"
            f"  curl -X PUT -u ADMIN {base_url}/_users/org.couchdb.user:NAME \\\n"
            "       -H 'Content-Type: application/json' \\\n"
            f"       -d '{{\"name\":\"NAME\",\"password\":\"PASSWORD\",\"type\":\"user\",\"roles\":[\"{READER_ROLE}\"]}}'")


def console_command(database: str) -> str:
    from afterd.config import Settings

    return "after console" + ("" if database == Settings.database else f" --database {database}")


def init_console(couch, settings, *, console_csp: bool, out=print) -> None:
    """What `after init` says and does about the console, after the design is installed."""
    from afterd.config import mask_url
    from afterd.console.serve import DEFAULT_PORT, LOOPBACK

    base = mask_url(couch.base_url)
    if console_csp:
        out(csp_warning(base))
        old = set_attachments_csp(couch)
        out(f"  set (it was {old!r})." if old else "  set.")
    install_login(couch)
    out(f"roles: '{ACTING_ROLE}' reads and acts, '{READER_ROLE}' reads only "
        "(validate_doc_update refuses its writes)")
    out(f"console: run `{console_command(couch.database)}` on this machine (it changes nothing on the server), "
        "then open\n"
        f"  http://{LOOPBACK}:{DEFAULT_PORT}{page_path(couch.database)}\n"
        f"  from elsewhere through an SSH tunnel: ssh -L {DEFAULT_PORT}:{LOOPBACK}:{DEFAULT_PORT} THIS-HOST")
    out(f"console on the server itself: {base}{login_path(couch.database)}")
    if scripts_blocked(couch):
        out("  not usable on this server as it is: it serves attachments with 'Content-Security-Policy:\n"
            "  sandbox' (Apache CouchDB 3's default), so attached pages run no script. `after init\n"
            "  --console-csp` relaxes that server-wide: read what it allows before you use it.")
    else:
        out(f"  a login page (database {LOGIN_DATABASE}, readable by everyone, holds only it); after\n"
            f"  logging in it opens {base}{page_path(couch.database)}")
    out(user_help(base, couch.database))
