"""A cron repeat in words: the console's cronWords (console-lib.mjs, run by node) says what
`after show --policies` says (afterd/cron.py describe), on one table and on random expressions."""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afterd.cron import describe
from test_console_lib import run_node

WORDS = json.loads((Path(__file__).parent.parent / "cron_words.json").read_text(encoding="utf-8"))["rows"]


def node_words(rows):
    return run_node(f"""
        const rows = {json.dumps(rows)};
        console.log(JSON.stringify(rows.map(([expr, tz]) => lib.cronWords(expr, tz))));""")


def test_the_console_says_the_table_in_the_same_words():
    assert node_words([[e, tz] for e, tz, _ in WORDS]) == [w for _, _, w in WORDS]


def field(values, names=()):
    item = st.one_of(st.sampled_from(["*", "*/2", "*/15", "*/1"] + list(names)),
                     st.sampled_from(values).map(str),
                     st.tuples(st.sampled_from(values), st.sampled_from(values)).map(
                         lambda t: f"{min(t)}-{max(t)}"),
                     st.tuples(st.sampled_from(values), st.sampled_from(values), st.integers(1, 7)).map(
                         lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"))
    return st.lists(item, min_size=1, max_size=3).map(",".join)


expression = st.tuples(
    st.one_of(st.just(None), field(range(0, 60))), field(range(0, 60)), field(range(0, 24)),
    field(range(1, 29)), field(range(1, 13), ["JAN", "mar-jun"]), field(range(0, 8), ["MON-FRI", "sun"]),
).map(lambda f: " ".join(x for x in f if x is not None))


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                  HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(batch=st.lists(st.tuples(expression, st.sampled_from([None, "Europe/Lisbon", "Etc/GMT-3"])),
                      min_size=100, max_size=100))
def test_the_console_says_random_expressions_in_the_same_words(batch):
    assert node_words([list(row) for row in batch]) == [describe(e, tz) for e, tz in batch]
