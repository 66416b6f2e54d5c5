"""Example job: POST a JSON notification to a URL (a chat webhook, an alerting endpoint).

Made for follow-up tasks: with `"on_error": {"job": {"name": "notify_url", "arguments":
{"url": "https://hooks.example.org/ops"}}}` on a task, each failed run creates a task
running this job, and the notification says which task failed and why (the follow-up's
`parent` field, which the worker fills in).

Task arguments: {"url": ..., "message": "billing failed", "payload": {...}, "timeout_s": 10};
only "url" is required. A plain list [url] or [url, message] works too.

    after add --worker manobi --job notify_url --arg https://hooks.example.org/ops --arg "backup done"

The body is JSON: {"text": <message>, "task": <this task's id>, "parent": <the parent's
id, run, status and error or result, when there is one>, ...payload}. "text" is the key
Slack and Mattermost incoming webhooks read. A URL may carry user:password (sent as basic
auth), never written to the log or the result. An answer outside 2xx fails the task.
"""

import urllib.parse

import requests

DEFAULT_TIMEOUT_S = 10.0
BODY_TAIL_CHARS = 300


def run(task):
    url, message, payload, timeout_s = read_arguments(task.arguments)
    parent = task.doc.get("parent") if isinstance(task.doc, dict) else None
    body = notification(message, task.id, parent, payload)
    shown = mask(url)
    task.logger.info("POST %s: %s", shown, body["text"])
    try:
        answer = requests.post(url, json=body, timeout=timeout_s)
    except requests.Timeout:
        raise RuntimeError(f"POST {shown}: no answer within {timeout_s:g}s") from None
    except requests.RequestException as e:
        # requests' own message can quote the URL; name only the kind of failure.
        raise RuntimeError(f"POST {shown} failed: {type(e).__name__}") from None
    if not 200 <= answer.status_code < 300:
        raise RuntimeError(f"POST {shown} answered {answer.status_code}: "
                           f"{answer.text[-BODY_TAIL_CHARS:].strip()}")
    return {"status": answer.status_code, "sent": body["text"]}


def notification(message, task_id, parent, payload) -> dict:
    """The JSON body: a line a person reads, and the facts a program reads."""
    if message is None:
        if isinstance(parent, dict):
            what = parent.get("error") or parent.get("result")
            message = f"task {parent.get('id')} ended {parent.get('status')}" + (f": {what}" if what else "")
        else:
            message = f"notification from task {task_id}"
    body = dict(payload or {})
    body.update({"text": str(message), "task": task_id})
    if isinstance(parent, dict):
        body["parent"] = parent
    return body


def read_arguments(arguments):
    if isinstance(arguments, list) and 1 <= len(arguments) <= 2:
        arguments = {"url": arguments[0], "message": arguments[1] if len(arguments) == 2 else None}
    if not isinstance(arguments, dict) or not isinstance(arguments.get("url"), str):
        raise ValueError('arguments: an object like {"url": "https://hooks.example.org/ops", '
                         '"message": "billing failed"}')
    url = arguments["url"]
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url: {mask(url)!r} is not an http(s) URL")
    payload = arguments.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise ValueError("payload: must be a JSON object (its keys are added to the notification)")
    timeout_s = float(arguments.get("timeout_s", DEFAULT_TIMEOUT_S))
    return url, arguments.get("message"), payload, timeout_s


def mask(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))
