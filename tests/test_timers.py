import random

from afterd.timers import Timers


def test_pops_in_deadline_order_and_only_when_due():
    timers = Timers()
    for key, deadline in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
        timers.arm(key, deadline)
    assert timers.pop_due(0.5) == []
    assert timers.pop_due(2.0) == ["a", "b"]
    assert timers.next_deadline() == 3.0
    assert len(timers) == 1


def test_rearm_replaces_and_disarm_forgets():
    timers = Timers()
    timers.arm("x", 5.0)
    timers.arm("x", 1.0)
    timers.arm("y", 2.0)
    assert timers.disarm("y")
    assert not timers.disarm("y")
    assert timers.pop_due(10.0) == ["x"]
    assert timers.next_deadline() is None


def test_matches_a_sorted_model_under_random_operations():
    rng = random.Random(7)
    timers, model = Timers(), {}
    for step in range(20000):
        key = rng.randrange(500)
        op = rng.random()
        if op < 0.6:
            deadline = rng.uniform(0, 1000)
            timers.arm(key, deadline)
            model[key] = deadline
        elif op < 0.8:
            assert timers.disarm(key) == (model.pop(key, None) is not None)
        else:
            horizon = rng.uniform(0, 1000)
            due = timers.pop_due(horizon)
            expected = sorted((d, k) for k, d in model.items() if d <= horizon)
            assert [d for d, _ in expected] == [model[k] for k in due]
            assert set(due) == {k for _, k in expected}
            for k in due:
                del model[k]
        assert len(timers) == len(model)
    assert len(timers._heap) <= 2 * len(model) + 1024 + 1
