"""A small TCP proxy on a loopback address, which a test can cut and restore.

One per simulated host: the host's worker reaches CouchDB only through it, so cutting
it isolates that host alone, like a network partition. cut() closes every open
connection and stops listening (new connections are refused); restore() listens again
on the same address and port.
"""

import socket
import threading
from urllib.parse import urlsplit


GARBAGE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"
           b"{\"results\": [{\"seq\": \x00\xff, \"id\": ]]]} not json at all \x1b[31m!!!!!!!!!!!")
HANG_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
             b"{\"results\": [{\"seq\": \"1-")


class CuttableProxy:
    """mode: "pass" (relay to upstream), "garbage" (answer every request with a broken
    response) or "hang" (send headers and half a body, then nothing, forever)."""

    def __init__(self, listen_host: str, upstream: "str | tuple[str, int]"):
        """upstream: the CouchDB URL to relay to, whose scheme, credentials and path `url`
        keeps (a real CouchDB wants them: AFTER_TEST_COUCHDB_URL), or a (host, port)."""
        self.scheme, self.userinfo, self.path = "http", "", ""
        if isinstance(upstream, str):
            parts = urlsplit(upstream)
            self.scheme, self.path = parts.scheme, parts.path.rstrip("/")
            if "@" in parts.netloc:
                self.userinfo = parts.netloc.rsplit("@", 1)[0] + "@"
            upstream = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self.mode = "pass"
        self.blocked_paths: tuple[str, ...] = ()   # connections whose first request names one are dropped
        self.listen_host = listen_host
        self.upstream = upstream
        self.port = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener = None
        self.cuts = 0

    @property
    def url(self):
        """The upstream's URL through this proxy (with the upstream's credentials, if any)."""
        return f"{self.scheme}://{self.userinfo}{self.listen_host}:{self.port}{self.path}"

    def start(self):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.listen_host, self.port or 0))
        self.port = self._listener.getsockname()[1]
        self._listener.listen(64)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return   # closed by cut() or close()
            if self.mode != "pass":
                with self._lock:
                    self._conns.add(client)
                threading.Thread(target=self._fake, args=(client,), daemon=True).start()
                continue
            if self.blocked_paths and self._names_blocked_path(client):
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:   # cut meanwhile
                    client.close(), server.close()
                    return
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._conns.discard(source), self._conns.discard(sink)

    def _names_blocked_path(self, client) -> bool:
        """Peek at the request line (without consuming it) for a blocked path."""
        client.settimeout(5)
        try:
            head = client.recv(4096, socket.MSG_PEEK)
        except OSError:
            return True
        finally:
            client.settimeout(None)
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        return any(path in line for path in self.blocked_paths)

    def _fake(self, client):
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = client.recv(65536)
                if not data:
                    return
                request += data
            if self.mode == "garbage":
                client.sendall(GARBAGE)
                client.close()
            else:
                client.sendall(HANG_HEAD)   # and then nothing: the client's timeout must act
        except OSError:
            pass

    def set_mode(self, mode: str):
        """Switch behaviour; open connections are dropped so long-polls meet the new mode."""
        self.mode = mode
        with self._lock:
            conns, self._conns = self._conns, set()
        _drop(conns)

    def cut(self):
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        self.cuts += 1
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)   # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        _drop(conns)

    def restore(self):
        self.start()

    close = cut


def _drop(conns):
    """Close connections at once, both ways, so the peers see the link go."""
    for s in conns:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
