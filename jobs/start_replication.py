"""Example job: replicate one CouchDB database into another (POST /_replicate).

Task arguments: [source, target] or {"source": ..., "target": ..., "create_target": true}.
Each is a full URL (http://user:password@other-host:5984/db) or a database name on the
server this worker uses (couchdb_url in after.conf, or AFTER_COUCHDB_URL).

    after add --worker manobi --job start_replication --arg tasks --arg http://backup:5984/tasks --every 1d

The replication runs once to completion (not continuous), so the task's result is
CouchDB's answer (history, docs written). Passwords in the URLs are never logged
and are scrubbed from the result.
"""

import json
import os
import urllib.parse

import requests

DEFAULT_COUCHDB_URL = "http://127.0.0.1:5984"
REPLICATION_TIMEOUT_S = 3600.0   # a one-shot replication answers only when it is finished


def run(task):
    source, target, create_target = read_arguments(task.arguments)
    server = server_url()
    source_url, target_url = database_url(server, source), database_url(server, target)
    secrets = [p for p in (password_of(server), password_of(source_url), password_of(target_url)) if p]
    task.logger.info("replicating %s -> %s", mask(source_url), mask(target_url))
    body = {"source": source_url, "target": target_url, "create_target": create_target}
    try:
        answer = requests.post(f"{server}/_replicate", json=body, timeout=(10, REPLICATION_TIMEOUT_S))
    except requests.RequestException as e:
        raise RuntimeError(f"CouchDB at {mask(server)} is unreachable: {type(e).__name__}") from None
    text = scrub(answer.text, secrets)
    if not 200 <= answer.status_code < 300:
        raise RuntimeError(f"replication {mask(source_url)} -> {mask(target_url)} refused: "
                           f"{answer.status_code} {text.strip()[:300]}")
    return json.loads(text)


def read_arguments(arguments):
    if isinstance(arguments, dict):
        source, target = arguments.get("source"), arguments.get("target")
        create_target = bool(arguments.get("create_target", False))
    elif isinstance(arguments, list) and len(arguments) == 2:
        (source, target), create_target = arguments, False
    else:
        raise ValueError('arguments: [source, target] or {"source": ..., "target": ..., "create_target": true}')
    if not (isinstance(source, str) and source and isinstance(target, str) and target):
        raise ValueError("arguments: source and target must be database names or URLs")
    return source, target, create_target


def server_url() -> str:
    """The worker's own CouchDB: after.conf and AFTER_COUCHDB_URL, as the worker reads them."""
    try:
        from afterd.config import load_settings
        return load_settings().couchdb_url.rstrip("/")
    except ImportError:
        return os.environ.get("AFTER_COUCHDB_URL", DEFAULT_COUCHDB_URL).rstrip("/")


def database_url(server: str, name_or_url: str) -> str:
    # CouchDB 3 no longer accepts bare local names in _replicate: always send URLs.
    if urllib.parse.urlsplit(name_or_url).scheme in ("http", "https"):
        return name_or_url
    return f"{server}/{urllib.parse.quote(name_or_url, safe='')}"


def password_of(url: str) -> str | None:
    password = urllib.parse.urlsplit(url).password
    return urllib.parse.unquote(password) if password else None


def scrub(text: str, secrets) -> str:
    for secret in secrets:
        text = text.replace(secret, "***").replace(urllib.parse.quote(secret, safe=""), "***")
    return text


def mask(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))
