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
     ("scheduled", "running", "done", "error", "reschedule", "cancel", "canceled")] + [
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
