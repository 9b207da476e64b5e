"""The retry schedule, driven by an injected clock: attempt times, count, the end state."""

from __future__ import annotations

import itertools

import pytest

from ability_gateway.server.callbacks.steps import next_delay

SPEC_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0)


def simulate(schedule: tuple[float, ...], fails: int) -> tuple[list[float], str]:
    """Attempt times on a fake clock when the first ``fails`` attempts fail."""
    clock = 0.0
    times: list[float] = []
    attempts = 0
    while True:
        times.append(clock)
        attempts += 1
        if attempts > fails:
            return times, "delivered"
        delay = next_delay(attempts, schedule)
        if delay is None:
            return times, "exhausted"
        clock += delay


def test_the_spec_schedule_is_six_attempts_over_about_seventeen_minutes() -> None:
    times, state = simulate(SPEC_SCHEDULE, fails=100)
    assert state == "exhausted"
    assert times == [0, 10, 40, 100, 400, 1000]
    assert [b - a for a, b in itertools.pairwise(times)] == list(SPEC_SCHEDULE)


@pytest.mark.parametrize(("fails", "attempts"), [(0, 1), (1, 2), (3, 4), (5, 6)])
def test_a_success_stops_the_schedule(fails: int, attempts: int) -> None:
    times, state = simulate(SPEC_SCHEDULE, fails=fails)
    assert state == "delivered"
    assert len(times) == attempts


def test_a_compressed_schedule_keeps_its_shape() -> None:
    times, state = simulate((0.5, 1.5), fails=10)
    assert state == "exhausted"
    assert times == [0, 0.5, 2.0]


def test_no_delay_before_the_first_attempt_or_after_the_last() -> None:
    assert next_delay(0, SPEC_SCHEDULE) is None
    assert next_delay(6, SPEC_SCHEDULE) is None
    assert next_delay(5, SPEC_SCHEDULE) == 600.0
