"""The task model: dates, statuses, and what parse_task hands the worker (pure, table-driven)."""

import copy
from datetime import datetime, timedelta, timezone

import pytest

from afterd.repeat import Repeat
from afterd.task import (FINAL, STATUSES, TaskError, format_date, normalize_status, parse_date,
                         parse_task)
from doc_cases import REAL_EXAMPLE, SEED_EXAMPLE

UTC = timezone.utc


@pytest.mark.parametrize("text,expected", [
    ("2012-02-27", datetime(2012, 2, 27, tzinfo=UTC)),                       # date alone: midnight UTC
    ("2026-12-01T03:00:00", datetime(2026, 12, 1, 3, tzinfo=UTC)),           # naive: UTC
    ("2026-12-01T03:00", datetime(2026, 12, 1, 3, tzinfo=UTC)),
    ("2026-12-01T03:00:00Z", datetime(2026, 12, 1, 3, tzinfo=UTC)),
    ("2026-12-01T03:00:00.437Z", datetime(2026, 12, 1, 3, 0, 0, 437000, tzinfo=UTC)),
    ("2026-12-01T03:00:00.4Z", datetime(2026, 12, 1, 3, 0, 0, 400000, tzinfo=UTC)),
    ("2026-12-01T03:00:00.000001Z", datetime(2026, 12, 1, 3, 0, 0, 1, tzinfo=UTC)),
    ("2026-12-01T04:00:00+01:00", datetime(2026, 12, 1, 3, tzinfo=UTC)),
    ("2026-12-01T00:30:00-03:30", datetime(2026, 12, 1, 4, tzinfo=UTC)),
    ("2026-12-01T00:30:00+05:45", datetime(2026, 11, 30, 18, 45, tzinfo=UTC)),   # crosses midnight
    ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC)),
])
def test_parse_date(text, expected):
    parsed = parse_date(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize("value,says", [
    ("2026-02-30", "not a real date"),
    ("2026-12-01 03:00:00", "is not a date"),
    ("1969-12-31", "between 1970 and 2999"),
    ("3000-01-01", "between 1970 and 2999"),
    ("2026-12-01T03:00:00+25:00", "not a valid UTC offset"),
    ("", "is not a date"),
    (20261201, "must be a string"),
    (None, "must be a string"),
])
def test_parse_date_refuses_with_one_line_naming_the_field(value, says):
    with pytest.raises(TaskError) as caught:
        parse_date(value)
    assert str(caught.value).startswith("date: ") and says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_parse_date_names_the_field_it_is_given():
    with pytest.raises(TaskError, match=r"^until: "):
        parse_date("soon", "until")


@pytest.mark.parametrize("dt,text", [
    (datetime(2026, 12, 1, 3, tzinfo=UTC), "2026-12-01T03:00:00Z"),
    (datetime(2026, 12, 1, 3, 0, 0, 437000, tzinfo=UTC), "2026-12-01T03:00:00.437Z"),
    (datetime(2026, 12, 1, 3, 0, 0, 437999, tzinfo=UTC), "2026-12-01T03:00:00.437Z"),   # sub-ms dropped
    (datetime(2026, 12, 1, 3, 0, 0, 999, tzinfo=UTC), "2026-12-01T03:00:00Z"),
    (datetime(2026, 12, 1, 4, tzinfo=timezone(timedelta(hours=1))), "2026-12-01T03:00:00Z"),
    (datetime(2026, 12, 1, 3), "2026-12-01T03:00:00Z"),                                  # naive = UTC
])
def test_format_date(dt, text):
    assert format_date(dt) == text


@pytest.mark.parametrize("text", ["2012-02-27T00:00:00Z", "2026-12-01T03:00:00.437Z", "2999-12-31T23:59:59.999Z"])
def test_format_parse_round_trip(text):
    assert format_date(parse_date(text)) == text


@pytest.mark.parametrize("value,expected", [(s, s) for s in STATUSES] + [("err", "error")])
def test_normalize_status(value, expected):
    assert normalize_status(value) == expected


@pytest.mark.parametrize("value", ["pending", "ERR", "", None, 1])
def test_normalize_status_refuses_unknown(value):
    with pytest.raises(TaskError, match=r"^status: .*use one of waiting"):
        normalize_status(value)


def test_final_statuses():
    assert FINAL == {"done", "error", "canceled"} and FINAL <= set(STATUSES)


def test_seed_example_parses_to_what_the_worker_needs():
    doc = dict(SEED_EXAMPLE, _id="t1", _rev="1-abc")
    task = parse_task(doc)
    assert (task.id, task.rev, task.worker, task.status) == ("t1", "1-abc", "manobi", "waiting")
    assert task.date == datetime(2026, 12, 1, 3, tzinfo=UTC)
    assert (task.job_name, task.arguments) == ("generate_billing", ["1234"])
    assert isinstance(task.repeat, Repeat) and task.repeat.offset.months == 1
    assert (task.timeout_s, task.retry) == (None, 0)


def test_real_example_parses():
    task = parse_task(copy.deepcopy(REAL_EXAMPLE))
    assert task.date == datetime(2012, 2, 27, tzinfo=UTC)
    assert (task.repeat.offset.months, task.repeat.offset.days) == (1, 7)
    assert task.arguments == []


def test_defaults_and_optional_fields():
    doc = {"worker": "w", "date": "2026-01-01", "status": "err", "job": {"name": "j"},
           "timeout": 2.5, "retry": 2.0}
    task = parse_task(doc)
    assert (task.status, task.arguments, task.repeat) == ("error", [], None)
    assert task.timeout_s == 2.5 and task.retry == 2 and isinstance(task.retry, int)


def test_unknown_fields_kept_and_document_untouched():
    doc = dict(SEED_EXAMPLE, customer={"id": 7}, tags=["x"], status="err")
    before = copy.deepcopy(doc)
    task = parse_task(doc)
    assert task.doc is doc and doc == before          # "err" stays "err" in the raw document
    assert task.doc["customer"] == {"id": 7}


def test_task_is_immutable():
    task = parse_task(copy.deepcopy(SEED_EXAMPLE))
    with pytest.raises(AttributeError):
        task.status = "done"


def test_not_an_object():
    with pytest.raises(TaskError, match=r"^document: "):
        parse_task(["worker"])


def test_errors_are_value_errors_with_field_and_problem():
    with pytest.raises(ValueError) as caught:
        parse_task(dict(SEED_EXAMPLE, job={"name": "a.b"}))
    assert caught.value.field == "job.name" and "letters, digits and _" in caught.value.problem
