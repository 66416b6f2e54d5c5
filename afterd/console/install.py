"""What `after init` and a worker's design install need for the console.

- attachments(): the static files as `_attachments` of `_design/after` (base64 inline), so
  the one PUT that installs or upgrades the design document carries them; tasks are never
  touched.
- security(): `_security` with the acting role and the read-only role. Reading is CouchDB's
  membership; writing is refused by validate_doc_update to members without the acting role.
- CSP: Apache CouchDB 3 serves attachments with `Content-Security-Policy: sandbox`, so an
  attached page runs no script. set_attachments_csp() replaces that, server-wide, with
  CONSOLE_CSP, only when the operator asked (`after init --console-csp`).
"""

import base64
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


def attachments() -> dict:
    return {name: {"content_type": kind, "data": base64.b64encode(read_file(name)).decode("ascii")}
            for name, kind in FILES.items()}


def security() -> dict:
    """Members by role: CouchDB refuses everyone else (pouchdb-server's _find ignores it)."""
    return {"admins": {"names": [], "roles": []},
            "members": {"names": [], "roles": [ACTING_ROLE, READER_ROLE]}}


def page_path(database: str) -> str:
    return f"/{quote(database, safe='')}/_design/after/{PAGE}"


def csp_warning(base_url: str) -> str:
    return (f"--console-csp: setting [{CSP_SECTION}] {CSP_KEY} on the server {base_url}.\n"
            "  This is server-wide: the attachments of EVERY database on this server are served\n"
            "  with this policy instead of CouchDB's default 'sandbox':\n"
            f"    {CONSOLE_CSP}\n"
            "  It lets same-origin scripts in attached pages run (the console needs that) and\n"
            "  nothing else: no inline script, no plugins, no framing.\n"
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


def init_console(couch, settings, *, console_csp: bool, out=print) -> None:
    """What `after init` says and does about the console, after the design is installed."""
    from afterd.config import mask_url

    base = mask_url(couch.base_url)
    if console_csp:
        out(csp_warning(base))
        old = set_attachments_csp(couch)
        out(f"  set (it was {old!r})." if old else "  set.")
    out(f"roles: '{ACTING_ROLE}' reads and acts, '{READER_ROLE}' reads only "
        "(validate_doc_update refuses its writes)")
    out(f"console: {base}{page_path(couch.database)}")
    if not console_csp:
        out("  on Apache CouchDB 3 attached pages run no script (its default [csp] attachments sandbox):\n"
            "  run `after console` there (a loopback proxy, changes nothing on the server), or\n"
            "  `after init --console-csp` to relax the sandbox server-wide.")
    out("  log in with a CouchDB user; where the database has members, log in first at "
        f"{base}/_utils/ (same origin) or use `after console`.")
    out(user_help(base, couch.database))
