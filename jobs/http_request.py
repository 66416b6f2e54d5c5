"""Example job: call a URL (a webhook, a health check, an API that starts some work).

Task arguments: {"url": "https://example.org/hook", "method": "POST", "json": {...},
"headers": {...}, "timeout_s": 30}; only "url" is required (method defaults to GET).
A plain list ["https://..."] works too.

    after add --worker web --job http_request --arguments '{"url": "http://127.0.0.1:8080/nightly"}' --every 1d

A URL may carry user:password (sent as HTTP basic auth); it is never written
to the log or the result. Returns {"status", "body_tail", "elapsed_ms"}; an answer
outside 2xx fails the task with its status and the end of its body.
"""

import urllib.parse

import requests

BODY_TAIL_CHARS = 500
DEFAULT_TIMEOUT_S = 30.0


def run(task):
    url, method, body, headers, timeout_s = read_arguments(task.arguments)
    shown = mask(url)
    task.logger.info("%s %s", method, shown)
    try:
        answer = requests.request(method, url, json=body, headers=headers, timeout=timeout_s)
    except requests.Timeout:
        raise RuntimeError(f"{method} {shown}: no answer within {timeout_s:g}s") from None
    except requests.RequestException as e:
        # requests' own message can quote the URL; name only the kind of failure.
        raise RuntimeError(f"{method} {shown} failed: {type(e).__name__}") from None
    outcome = {"status": answer.status_code, "body_tail": answer.text[-BODY_TAIL_CHARS:],
               "elapsed_ms": round(answer.elapsed.total_seconds() * 1000, 1)}
    if not 200 <= answer.status_code < 300:
        raise RuntimeError(f"{method} {shown} answered {answer.status_code}: {outcome['body_tail'].strip()}")
    return outcome


def read_arguments(arguments):
    if isinstance(arguments, list) and len(arguments) == 1:
        arguments = {"url": arguments[0]}
    if not isinstance(arguments, dict) or not isinstance(arguments.get("url"), str):
        raise ValueError('arguments: an object like {"url": "https://example.org/hook", "method": "POST"}')
    url = arguments["url"]
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url: {mask(url)!r} is not an http(s) URL")
    method = str(arguments.get("method", "GET")).upper()
    timeout_s = float(arguments.get("timeout_s", DEFAULT_TIMEOUT_S))
    return url, method, arguments.get("json"), arguments.get("headers"), timeout_s


def mask(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))
