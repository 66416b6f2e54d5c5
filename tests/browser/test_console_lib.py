"""The console's pure JavaScript, run by node (which the test server needs anyway):
dates typed in the form, durations, repeat in words, and the views' UTC keys, each
held equal to the Python model (afterd/task.py) where both read the same thing."""

import json
import os
import shutil
import subprocess
from datetime import timezone

import pytest

from afterd.task import format_date, parse_date
from console_harness import ROOT

LIB = ROOT / "afterd" / "console" / "console-lib.mjs"
DESIGN = ROOT / "afterd" / "design"
NODE = shutil.which("node") or shutil.which("nodejs")

DATES = ["2026-12-01", "2026-12-01T03:00", "2026-12-01T03:00:00Z", "2026-12-01T04:00:00.250+01:00",
         "2026-12-01T03:00:00.123456", "2026-12-31T23:30:00-02:30", "1970-01-01T00:00:00Z",
         "2999-12-31T23:59:59.999Z", "2024-02-29T12:00:00+14:00"]


def run_node(script: str):
    if not NODE:
        pytest.skip("node is not installed (make deps installs it for the test server)")
    program = f"const lib = await import({json.dumps(LIB.as_uri())});\n" + script
    out = subprocess.run([NODE, "--input-type=module", "-e", program], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TZ": "America/Sao_Paulo"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_page_reads_dates_as_the_python_model_does():
    got = run_node(f"""
        const dates = {json.dumps(DATES)};
        console.log(JSON.stringify(dates.map((d) => lib.isoUTC(lib.parseDate(d)))));""")
    assert got == [format_date(parse_date(d)) for d in DATES]


def test_the_views_key_dates_in_utc_as_the_python_model_does():
    """Every console view shares one utc() helper; console_due emits its result as the key.
    TZ is set to a zone with an offset: no local time may leak into a key."""
    source = (DESIGN / "console_due.map.js").read_text()
    got = run_node(f"""
        const keys = [];
        globalThis.emit = (key) => keys.push(key);
        const map = eval("(" + {json.dumps(source)} + ")");
        for (const date of {json.dumps(DATES)}) map({{_id: "t", status: "scheduled", date}});
        console.log(JSON.stringify(keys));""")
    want = []
    for d in DATES:
        dt = parse_date(d).astimezone(timezone.utc)
        want.append(dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z")
    assert got == want


def test_the_utc_helper_is_the_same_in_every_view():
    helpers = set()
    for path in DESIGN.glob("console_*.map.js"):
        text = path.read_text()
        if "function utc(" in text:
            start = text.index("  function utc(")
            helpers.add(text[start:text.index("\n  }\n", start)])
    assert len(helpers) == 1


@pytest.mark.parametrize("text,offset", [
    ("1M7d", {"months": 1, "days": 7}), ("1h30m", {"hours": 1, "minutes": 30}), ("90s", {"seconds": 90}),
    ("250ms", {"milliseconds": 250}), ("10 minutes", {"minutes": 10}), ("2 hours 5 minutes", {"hours": 2, "minutes": 5}),
    ("1 month and 7 days", {"months": 1, "days": 7}), ("3 weeks", {"weeks": 3}), ("1y", {"years": 1}),
])
def test_durations_a_person_types(text, offset):
    assert run_node(f"console.log(JSON.stringify(lib.parseDuration({json.dumps(text)})))") == offset


@pytest.mark.parametrize("text", ["", "10", "5 parsecs", "1x", "m", "1h junk", "10 Minutes!"])
def test_durations_that_are_not(text):
    got = run_node(f"""
        try {{ lib.parseDuration({json.dumps(text)}); console.log(JSON.stringify("accepted")); }}
        catch (e) {{ console.log(JSON.stringify(e.message)); }}""")
    assert got != "accepted", text


@pytest.mark.parametrize("text,tz,want", [
    ("2026-12-01 03:00", "", "2026-12-01T03:00:00Z"),
    ("2026-12-01T04:00:00.250+01:00", "", "2026-12-01T03:00:00.250Z"),
    ("2027-01-05 03:00", "Europe/Lisbon", "2027-01-05T03:00:00Z"),       # winter: UTC+0
    ("2027-07-05 03:00", "Europe/Lisbon", "2027-07-05T02:00:00Z"),       # summer: UTC+1
    ("2027-07-05 03:00", "America/New_York", "2027-07-05T07:00:00Z"),
    ("2027-07-05T03:00:00Z", "America/New_York", "2027-07-05T03:00:00Z"),  # an explicit offset wins
])
def test_dates_a_person_types(text, tz, want):
    assert run_node(f"console.log(JSON.stringify(lib.parseWhen({json.dumps(text)}, {json.dumps(tz)})))") == want


def test_in_ten_minutes_and_now_are_from_the_browsers_clock():
    got = run_node("""
        const t0 = Date.now();
        const later = Date.parse(lib.parseWhen("in 10 minutes", ""));
        const now = Date.parse(lib.parseWhen("now", ""));
        console.log(JSON.stringify([later - t0, now - t0]));""")
    assert 600_000 - 1000 <= got[0] <= 600_000 + 1000 and -1000 <= got[1] <= 1000


@pytest.mark.parametrize("repeat,doc,words", [
    ({"months": 1, "days": 7}, {"status": "scheduled", "date": "2027-01-05T03:00:00Z"},
     "every month and 7 days, next 2027-01-05 03:00 UTC"),
    ({"d": 1}, None, "every day"),
    ({"hours": 2}, None, "every 2 hours"),
    ({"w": 1, "h": 12}, None, "every week and 12 hours"),
    ({"rrule": "FREQ=DAILY;BYHOUR=3", "tz": "Europe/Lisbon"}, None, "by the rule FREQ=DAILY;BYHOUR=3 (Europe/Lisbon time)"),
    ({"days": 1, "count": 5, "until": "2027-02-01"}, None, "every day, until 2027-02-01 00:00:00 UTC, 5 runs in all"),
    ({"days": 1}, {"status": "done", "date": "2027-01-05T03:00:00Z"}, "every day"),
])
def test_repeat_in_words(repeat, doc, words):
    assert run_node(f"console.log(JSON.stringify(lib.repeatWords({json.dumps(repeat)}, {json.dumps(doc)})))") == words


# ---- why, and when next (console-lib.mjs explain, afterd/explain.py) ----------------------------

EXPLAIN_CASES = ROOT / "tests" / "explain_cases.json"


def test_the_page_explains_a_task_as_after_explain_does():
    """Every case of the table both read: the page's sentences are the CLI's, word for word."""
    cases = json.loads(EXPLAIN_CASES.read_text())
    got = run_node(f"""
        const cases = {json.dumps(cases)};
        console.log(JSON.stringify(cases.map((c) => lib.explain(c.doc, c.heartbeats,
          c.design ? {{_id: "_design/after"}} : null, c.jobs, new Date(c.now)))));""")
    mismatched = [(case["case"], said, case["say"]) for case, said in zip(cases, got) if said != case["say"]]
    assert mismatched == []
    assert len(got) == len(cases) >= 20


def test_spans_and_sentences_as_the_cli_prints_them():
    from afterd.explain import sentence, span

    seconds = [0, 4.9, 59, 60, 65, 3600, 3660, 11520, 86399, 86400, 2 * 86400 + 7200]
    got = run_node(f"console.log(JSON.stringify([{json.dumps(seconds)}.map(lib.span), lib.sentence('runs next')]))")
    assert got == [[span(s) for s in seconds], sentence("runs next")]
