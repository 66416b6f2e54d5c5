"""One table of good and bad documents, shared by the Python model and the design document.

test_validation.py runs every row through afterd.task.check_document and through the real
server's validate_doc_update, so the two cannot drift apart. Other suites reuse it for
fault tests: `BAD` documents must never be stored; each names the field its error names.

Rows: (case id, document). Bad rows: (case id, field, document). `PYTHON_ONLY_BAD` rows are
refused by Python but stored by CouchDB, because the JS sandbox checks them by shape only
(no tz database, no RFC 5545 parser); a worker marks such a task "error" with the reason.
"""

import copy


def task(**changes):
    """A good waiting task with `changes` applied (a value of DROP removes the field)."""
    doc = {"worker": "manobi", "date": "2026-12-01T03:00:00Z", "status": "waiting",
           "job": {"name": "generate_billing", "arguments": ["1234"]}}
    for key, value in changes.items():
        if value is DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


DROP = object()

# The two examples users will copy first (design.md and the original's README).
SEED_EXAMPLE = {"worker": "manobi", "date": "2026-12-01T03:00:00Z", "status": "waiting",
                "job": {"name": "generate_billing", "arguments": ["1234"]}, "repeat": {"months": 1}}
REAL_EXAMPLE = {"worker": "manobi", "date": "2012-02-27", "status": "waiting",
                "job": {"name": "start_replication", "arguments": []}, "repeat": {"days": 7, "months": 1}}

GOOD = [
    ("seed example", SEED_EXAMPLE),
    ("real example", REAL_EXAMPLE),
    ("date only", task(date="2012-02-27")),
    ("naive datetime is UTC", task(date="2026-12-01T03:00:00")),
    ("no seconds", task(date="2026-12-01T03:00Z")),
    ("milliseconds", task(date="2026-12-01T03:00:00.437Z")),
    ("microseconds", task(date="2026-12-01T03:00:00.437512Z")),
    ("offset", task(date="2026-12-01T04:00:00+01:00")),
    ("negative offset", task(date="2026-12-01T00:00:00-03:30")),
    ("leap day", task(date="2024-02-29")),
    ("earliest year", task(date="1970-01-01")),
    ("latest year", task(date="2999-12-31T23:59:59.999Z")),
    ("arguments object", task(job={"name": "send", "arguments": {"to": "ops"}})),
    ("arguments default", task(job={"name": "send"})),
    ("job name underscore", task(job={"name": "_private_2", "arguments": []})),
    ("old err status", task(status="err")),
] + [(f"status {s}", task(status=s)) for s in
     ("scheduled", "running", "done", "error", "reschedule", "cancel", "canceled",
      "pause", "paused", "resume", "run")] + [
    ("repeat short keys", task(repeat={"y": 1, "M": 1, "w": 1, "d": 1, "h": 1, "m": 1, "s": 1, "ms": 1})),
    ("repeat long keys", task(repeat={"years": 1, "months": 2, "weeks": 1, "days": 1, "hours": 1,
                                      "minutes": 1, "seconds": 1, "milliseconds": 500})),
    ("repeat fractional days", task(repeat={"days": 1.5})),
    ("repeat integral float months", task(repeat={"months": 2.0})),
    ("repeat some zero keys", task(repeat={"days": 0, "hours": 6})),
    ("repeat one millisecond", task(repeat={"ms": 1})),
    ("repeat until", task(repeat={"days": 1, "until": "2027-01-01"})),
    ("repeat count", task(repeat={"days": 1, "count": 10})),
    ("repeat tz", task(repeat={"days": 1, "tz": "Europe/Lisbon"})),
    ("repeat tz UTC", task(repeat={"hours": 1, "tz": "UTC"})),
    ("repeat tz Etc/GMT+5", task(repeat={"hours": 1, "tz": "Etc/GMT+5"})),
    ("repeat null is no repeat", task(repeat=None)),
    ("repeat rrule", task(repeat={"rrule": "FREQ=DAILY;BYHOUR=3"})),
    ("repeat rrule prefix", task(repeat={"rrule": "RRULE:FREQ=WEEKLY;BYDAY=MO,FR;INTERVAL=2"})),
    ("repeat rrule with tz and count", task(repeat={"rrule": "FREQ=DAILY;BYHOUR=3", "tz": "Europe/Lisbon",
                                                    "count": 5})),
    ("repeat rrule UNTIL", task(repeat={"rrule": "FREQ=DAILY;UNTIL=20270101T000000Z"})),
    ("timeout", task(timeout=30)),
    ("timeout fraction", task(timeout=0.5)),
    ("timeout null", task(timeout=None)),
    ("retry", task(retry=3)),
    ("retry zero", task(retry=0)),
    # policies
    ("retry object, the design's example", task(retry={"attempts": 3, "delay": "30s", "backoff": 2,
                                                       "max_delay": "1h", "on": ["error", "timeout",
                                                                                 "interrupted"]})),
    ("retry object, attempts only", task(retry={"attempts": 1})),
    ("retry object, numbers of seconds", task(retry={"attempts": 5, "delay": 0.5, "max_delay": 0,
                                                     "backoff": 1.5, "on": ["timeout"]})),
    ("retry object, nulls are defaults", task(retry={"attempts": 2, "delay": None, "on": None})),
    ("retry largest number", task(retry=99)),
    ("retry integral float", task(retry=2.0)),
    ("catchup one", task(catchup="one")),
    ("catchup all with a window", task(catchup="all", catchup_window="1d12h")),
    ("catchup none", task(catchup="none", catchup_window=0)),
    ("catchup null is the default", task(catchup=None, catchup_window=None)),
    ("overlap wait", task(overlap="wait")),
    ("overlap skip", task(overlap="skip")),
    ("overlap replace", task(overlap="replace")),
    ("jitter string", task(jitter="5m")),
    ("jitter milliseconds", task(jitter="1500ms")),
    ("jitter seconds", task(jitter=30)),
    ("jitter zero", task(jitter=0)),
    ("jitter every unit but months", task(jitter="1w1d1h1m1s1ms")),
    ("history limit", task(history_limit=50)),
    ("history limit zero", task(history_limit=0)),
    ("history limit largest", task(history_limit=1000)),
    ("on_error template", task(on_error={"job": {"name": "notify_url",
                                                 "arguments": {"url": "http://127.0.0.1:9/hook"}}})),
    ("on_done template, every key", task(on_done={"job": {"name": "report", "arguments": ["x"]},
                                                  "worker": "reports", "date": "2026-12-02",
                                                  "timeout": 60})),
    ("templates null", task(on_done=None, on_error=None)),
    ("every policy at once", task(repeat={"minutes": 1}, retry={"attempts": 3, "delay": 10}, catchup="all",
                                  catchup_window="1h", overlap="skip", jitter="10s", history_limit=5,
                                  on_error={"job": {"name": "notify_url"}})),
    ("worker-written history and parent", task(history=[{"attempt": 1, "status": "done"}],
                                                parent={"id": "p", "run": "p@x#0", "status": "error"})),
    ("unknown user fields kept", task(customer="ACME", tags=["billing"], note={"a": 1})),
    ("worker fields", task(status="done", owner={"process": "after:heartbeat:manobi:host:1", "host": "h",
                                                  "pid": 12},
                           anchor="2026-12-01T03:00:00Z", occurrence=3, attempts=1,
                           started_at="2026-12-01T03:00:00.001Z", finished_at="2026-12-01T03:00:01Z",
                           runs=4, last_run={"status": "done", "result": 1}, result={"invoices": 3},
                           error=None, queued_ms=0.4, running=False)),
    ("worker error field", task(status="error", error={"type": "ValueError", "message": "x",
                                                       "traceback": "..."})),
    ("worker record", {"_id": "after:heartbeat:manobi:host:42", "type": "heartbeat", "worker": "manobi",
                       "at": "whatever"}),
    ("worker record not a task", {"_id": "after:lease:x", "type": "lease"}),
    ("a worker's InvalidTask verdict keeps the bad fields it judged",
     {"worker": "manobi", "date": "yesterday", "status": "error", "job": {"name": "../x"},
      "error": {"type": "InvalidTask", "message": "date: 'yesterday' is not a date", "traceback": None}}),
]

BAD = [
    # worker
    ("worker missing", "worker", task(worker=DROP)),
    ("worker null", "worker", task(worker=None)),
    ("worker empty", "worker", task(worker="")),
    ("worker blank", "worker", task(worker="  ")),
    ("worker padded", "worker", task(worker="manobi ")),
    ("worker number", "worker", task(worker=7)),
    # date
    ("date missing", "date", task(date=DROP)),
    ("date null", "date", task(date=None)),
    ("date number", "date", task(date=1700000000)),
    ("date words", "date", task(date="tomorrow")),
    ("date slashes", "date", task(date="2026/12/01")),
    ("date space separator", "date", task(date="2026-12-01 03:00:00")),
    ("date lowercase t", "date", task(date="2026-12-01t03:00:00Z")),
    ("date compact offset", "date", task(date="2026-12-01T03:00:00+0100")),
    ("date offset on date only", "date", task(date="2026-12-01Z")),
    ("date month 13", "date", task(date="2026-13-01")),
    ("date 30 February", "date", task(date="2026-02-30")),
    ("date 29 February non-leap", "date", task(date="2026-02-29")),
    ("date 24 hours", "date", task(date="2026-12-01T24:00:00Z")),
    ("date leap second", "date", task(date="2026-12-31T23:59:60Z")),
    ("date offset 24h", "date", task(date="2026-12-01T03:00:00+24:00")),
    ("date year 1969", "date", task(date="1969-12-31T23:59:59Z")),
    ("date year 3000", "date", task(date="3000-01-01")),
    ("date seven fraction digits", "date", task(date="2026-12-01T03:00:00.1234567Z")),
    ("date non-ascii digits", "date", task(date="٢٠٢٦-12-01")),
    ("date trailing text", "date", task(date="2026-12-01T03:00:00Z tomorrow")),
    # status
    ("status missing", "status", task(status=DROP)),
    ("status unknown", "status", task(status="pending")),
    ("status wrong case", "status", task(status="Waiting")),
    ("status null", "status", task(status=None)),
    # job
    ("job missing", "job", task(job=DROP)),
    ("job string", "job", task(job="generate_billing")),
    ("job list", "job", task(job=["generate_billing"])),
    ("job name missing", "job.name", task(job={"arguments": []})),
    ("job name empty", "job.name", task(job={"name": ""})),
    ("job name dotted", "job.name", task(job={"name": "billing.generate"})),
    ("job name path", "job.name", task(job={"name": "../etc/passwd"})),
    ("job name slash", "job.name", task(job={"name": "a/b"})),
    ("job name digit first", "job.name", task(job={"name": "1job"})),
    ("job name dash", "job.name", task(job={"name": "my-job"})),
    ("job name space", "job.name", task(job={"name": "my job"})),
    ("job name trailing newline", "job.name", task(job={"name": "job\n"})),
    ("job name non-ascii", "job.name", task(job={"name": "jöb"})),
    ("job arguments string", "job.arguments", task(job={"name": "send", "arguments": "1234"})),
    ("job arguments number", "job.arguments", task(job={"name": "send", "arguments": 3})),
    ("job arguments null", "job.arguments", task(job={"name": "send", "arguments": None})),
    # repeat
    ("repeat not object", "repeat", task(repeat=7)),
    ("repeat list", "repeat", task(repeat=[{"days": 1}])),
    ("repeat string", "repeat", task(repeat="daily")),
    ("repeat empty", "repeat", task(repeat={})),
    ("repeat unknown key", "repeat", task(repeat={"fortnights": 1})),
    ("repeat wrong case key", "repeat", task(repeat={"D": 1})),
    ("repeat string number", "repeat", task(repeat={"days": "1"})),
    ("repeat boolean", "repeat", task(repeat={"days": True})),
    ("repeat null value", "repeat", task(repeat={"days": None})),
    ("repeat fractional months", "repeat", task(repeat={"months": 1.5})),
    ("repeat fractional years", "repeat", task(repeat={"y": 0.5})),
    ("repeat negative", "repeat", task(repeat={"days": -1})),
    ("repeat negative part", "repeat", task(repeat={"months": 1, "days": -1})),
    ("repeat zero", "repeat", task(repeat={"days": 0})),
    ("repeat all zero", "repeat", task(repeat={"months": 0, "hours": 0, "ms": 0})),
    ("repeat under a millisecond", "repeat", task(repeat={"ms": 0.5})),
    ("repeat too large", "repeat", task(repeat={"years": 5000})),
    ("repeat long and short", "repeat", task(repeat={"days": 1, "d": 2})),
    ("repeat only until", "repeat", task(repeat={"until": "2027-01-01"})),
    ("repeat until bad", "repeat", task(repeat={"days": 1, "until": "next year"})),
    ("repeat until number", "repeat", task(repeat={"days": 1, "until": 2027})),
    ("repeat count zero", "repeat", task(repeat={"days": 1, "count": 0})),
    ("repeat count negative", "repeat", task(repeat={"days": 1, "count": -3})),
    ("repeat count fraction", "repeat", task(repeat={"days": 1, "count": 2.5})),
    ("repeat count string", "repeat", task(repeat={"days": 1, "count": "10"})),
    ("repeat tz number", "repeat", task(repeat={"days": 1, "tz": 1})),
    ("repeat tz shape", "repeat", task(repeat={"days": 1, "tz": "../../etc/passwd"})),
    ("repeat tz offset", "repeat", task(repeat={"days": 1, "tz": "+01:00"})),
    ("repeat rrule and offset", "repeat", task(repeat={"days": 1, "rrule": "FREQ=DAILY"})),
    ("repeat rrule not string", "repeat", task(repeat={"rrule": {"freq": "daily"}})),
    ("repeat rrule words", "repeat", task(repeat={"rrule": "every day"})),
    ("repeat rrule no FREQ", "repeat", task(repeat={"rrule": "BYHOUR=3"})),
    ("repeat rrule DTSTART", "repeat", task(repeat={"rrule": "DTSTART:20120201T093000Z\nRRULE:FREQ=DAILY"})),
    # timeout / retry
    ("timeout zero", "timeout", task(timeout=0)),
    ("timeout negative", "timeout", task(timeout=-5)),
    ("timeout string", "timeout", task(timeout="30s")),
    ("timeout boolean", "timeout", task(timeout=True)),
    ("retry negative", "retry", task(retry=-1)),
    ("retry fraction", "retry", task(retry=1.5)),
    ("retry string", "retry", task(retry="3")),
    ("retry boolean", "retry", task(retry=True)),
    ("retry null", "retry", task(retry=None)),
    ("retry too many", "retry", task(retry=100)),
    ("retry list", "retry", task(retry=[3])),
    ("retry object unknown key", "retry", task(retry={"attempts": 3, "tries": 3})),
    ("retry object without attempts", "retry.attempts", task(retry={"delay": "30s"})),
    ("retry attempts zero", "retry.attempts", task(retry={"attempts": 0})),
    ("retry attempts fraction", "retry.attempts", task(retry={"attempts": 2.5})),
    ("retry attempts string", "retry.attempts", task(retry={"attempts": "3"})),
    ("retry attempts too many", "retry.attempts", task(retry={"attempts": 101})),
    ("retry delay words", "retry.delay", task(retry={"attempts": 3, "delay": "soon"})),
    ("retry delay negative", "retry.delay", task(retry={"attempts": 3, "delay": -1})),
    ("retry delay in months", "retry.delay", task(retry={"attempts": 3, "delay": "1M"})),
    ("retry delay boolean", "retry.delay", task(retry={"attempts": 3, "delay": True})),
    ("retry delay unit twice", "retry.delay", task(retry={"attempts": 3, "delay": "1h1h"})),
    ("retry delay non-ascii digits", "retry.delay", task(retry={"attempts": 3, "delay": "٣s"})),
    ("retry delay space", "retry.delay", task(retry={"attempts": 3, "delay": "1h 30m"})),
    ("retry delay too long", "retry.delay", task(retry={"attempts": 3, "delay": "9999999999999999s"})),
    ("retry backoff below 1", "retry.backoff", task(retry={"attempts": 3, "backoff": 0.5})),
    ("retry backoff too large", "retry.backoff", task(retry={"attempts": 3, "backoff": 1000})),
    ("retry backoff string", "retry.backoff", task(retry={"attempts": 3, "backoff": "2"})),
    ("retry max_delay words", "retry.max_delay", task(retry={"attempts": 3, "max_delay": "an hour"})),
    ("retry max_delay in years", "retry.max_delay", task(retry={"attempts": 3, "max_delay": "1y"})),
    ("retry on unknown ending", "retry.on", task(retry={"attempts": 3, "on": ["error", "crash"]})),
    ("retry on empty", "retry.on", task(retry={"attempts": 3, "on": []})),
    ("retry on string", "retry.on", task(retry={"attempts": 3, "on": "error"})),
    # catchup / overlap / jitter / history_limit
    ("catchup unknown", "catchup", task(catchup="some")),
    ("catchup wrong case", "catchup", task(catchup="All")),
    ("catchup number", "catchup", task(catchup=1)),
    ("catchup window words", "catchup_window", task(catchup_window="a day")),
    ("catchup window negative", "catchup_window", task(catchup_window=-60)),
    ("catchup window in months", "catchup_window", task(catchup_window="1M")),
    ("catchup window list", "catchup_window", task(catchup_window=["1d"])),
    ("overlap unknown", "overlap", task(overlap="queue")),
    ("overlap boolean", "overlap", task(overlap=True)),
    ("jitter negative", "jitter", task(jitter=-1)),
    ("jitter empty", "jitter", task(jitter="")),
    ("jitter unit only", "jitter", task(jitter="s")),
    ("jitter too large", "jitter", task(jitter=1e12)),
    ("jitter object", "jitter", task(jitter={"s": 5})),
    ("history limit negative", "history_limit", task(history_limit=-1)),
    ("history limit fraction", "history_limit", task(history_limit=2.5)),
    ("history limit too large", "history_limit", task(history_limit=1001)),
    ("history limit string", "history_limit", task(history_limit="20")),
    # on_done / on_error templates
    ("on_error string", "on_error", task(on_error="notify_url")),
    ("on_error unknown key", "on_error", task(on_error={"job": {"name": "n"}, "status": "waiting"})),
    ("on_error without job", "on_error.job", task(on_error={"worker": "w"})),
    ("on_done job name path", "on_done.job.name", task(on_done={"job": {"name": "../x"}})),
    ("on_done job arguments string", "on_done.job.arguments",
     task(on_done={"job": {"name": "n", "arguments": "x"}})),
    ("on_error worker blank", "on_error.worker", task(on_error={"job": {"name": "n"}, "worker": " "})),
    ("on_error worker number", "on_error.worker", task(on_error={"job": {"name": "n"}, "worker": 3})),
    ("on_error date words", "on_error.date", task(on_error={"job": {"name": "n"}, "date": "later"})),
    ("on_done timeout zero", "on_done.timeout", task(on_done={"job": {"name": "n"}, "timeout": 0})),
    # worker-written fields a worker relies on
    ("anchor unparsable", "anchor", task(anchor="sometime")),
    ("occurrence negative", "occurrence", task(occurrence=-1)),
    # worker records
    ("worker record without type", "type", {"_id": "after:heartbeat:x", "worker": "manobi"}),
    ("worker record type number", "type", {"_id": "after:heartbeat:x", "type": 3}),
]

# Refused by the Python model only: the JS sandbox can check these by shape, not meaning.
PYTHON_ONLY_BAD = [
    ("repeat tz unknown", "repeat", task(repeat={"days": 1, "tz": "Mars/Olympus_Mons"})),
    ("repeat rrule bad value", "repeat", task(repeat={"rrule": "FREQ=FORTNIGHTLY"})),
    ("repeat rrule UNTIL not UTC", "repeat", task(repeat={"rrule": "FREQ=DAILY;UNTIL=20270101T000000"})),
]


def good_docs():
    return [(name, copy.deepcopy(doc)) for name, doc in GOOD]


def bad_docs(include_python_only=False):
    rows = BAD + (PYTHON_ONLY_BAD if include_python_only else [])
    return [(name, field, copy.deepcopy(doc)) for name, field, doc in rows]
