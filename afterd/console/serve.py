"""`after console`: the console's files on a loopback port, with a same-origin proxy to CouchDB.

For servers that keep CouchDB's attachment sandbox (`Content-Security-Policy: sandbox`,
which stops the attached page's scripts): like `kubectl proxy`, nothing changes on the
server. The page is served at the same path as when attached,
/<db>/_design/after/console.html, from this package's files (so it matches this version
of after), with the console's own CSP. Every other request the page makes goes to
CouchDB as it came, cookies included: the proxy adds no credentials of its own, so each
person still logs in as themselves and CouchDB decides what they may do.

Only what the console uses is forwarded: /_session and the one database. Nothing else
on the server (its config, other databases) is reachable through this port.
"""

import http.server
import logging
import socketserver
import sys
import threading
from urllib.parse import quote, unquote, urlsplit

import requests

from afterd.console.install import CONSOLE_CSP, FILES, read_file

log = logging.getLogger("after.console")

# Headers that belong to one hop (RFC 9110 §7.6.1), never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
FORWARD_REQUEST = {"accept", "content-type", "cookie", "if-match", "if-none-match", "authorization"}
LOOPBACK, DEFAULT_PORT = "127.0.0.1", 5986
CHANGES_READ_TIMEOUT_S = 90.0   # longer than the page's own 65 s deadline on a longpoll
READ_TIMEOUT_S = 600.0          # the first query of a view on a big database waits for its index build


class ConsoleProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, couchdb_url: str, database: str):
        super().__init__(address, Handler)
        parts = urlsplit(couchdb_url)
        # The upstream without credentials: the browser's own session is what gets forwarded.
        netloc = parts.hostname or "127.0.0.1"
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        self.upstream = f"{parts.scheme or 'http'}://{netloc}{parts.path.rstrip('/')}"
        self.database = database
        self.db_prefix = "/" + quote(database, safe="")
        self.files_prefix = f"{self.db_prefix}/_design/after/"
        self.local = threading.local()

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{self.files_prefix}console.html"

    def session(self) -> requests.Session:
        # One Session per handler thread: requests.Session is not thread-safe.
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.trust_env = False   # never a proxy from the environment
        return self.local.session


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "after-console"

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def do_PUT(self):
        self.handle_any()

    def do_DELETE(self):
        self.handle_any()

    def handle_any(self):
        path = self.path.split("?", 1)[0]
        if path in ("/", "/console.html"):
            self.redirect(self.server.files_prefix + "console.html")
            return
        if path.startswith(self.server.files_prefix) and self.command in ("GET", "HEAD"):
            name = unquote(path[len(self.server.files_prefix):])
            if name in FILES:
                self.send_file(name)
                return
        if self.allowed(path):
            self.forward()
            return
        self.send_json(404, b'{"error":"not_found","reason":"after console forwards only /_session and its database"}')

    def allowed(self, path: str) -> bool:
        if ".." in unquote(path):
            return False
        return path == "/_session" or path == self.server.db_prefix or path.startswith(self.server.db_prefix + "/")

    def redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_file(self, name: str):
        body = read_file(name)
        self.send_response(200)
        self.send_header("Content-Type", FILES[name])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CONSOLE_CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARD_REQUEST}
        read_s = CHANGES_READ_TIMEOUT_S if "/_changes" in self.path else READ_TIMEOUT_S
        try:
            resp = self.server.session().request(self.command, self.server.upstream + self.path, data=body,
                                                 headers=headers, timeout=(10, read_s), allow_redirects=False)
        except requests.RequestException as e:
            log.warning("CouchDB did not answer %s %s: %s", self.command, self.path.split("?")[0], type(e).__name__)
            self.send_json(502, b'{"error":"bad_gateway","reason":"CouchDB did not answer the console proxy"}')
            return
        content = resp.content
        self.send_response(resp.status_code)
        for key, value in resp.raw.headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-encoding":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):
                pass   # the page gave up on a longpoll; nothing to tell


def make_server(couchdb_url: str, database: str, host: str = LOOPBACK, port: int = DEFAULT_PORT) -> ConsoleProxy:
    return ConsoleProxy((host, port), couchdb_url, database)


def serve(couchdb_url: str, database: str, host: str = LOOPBACK, port: int = DEFAULT_PORT, out=print) -> int:
    server = make_server(couchdb_url, database, host, port)
    out(f"after console: open {server.address}")
    out(f"  it proxies /_session and /{database} to CouchDB at {server.upstream}, changing nothing there; "
        "log in with your CouchDB user. Ctrl-C stops it.")
    sys.stdout.flush()   # the address must reach a pipe (a script, a unit's log) now, not at exit
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
