"""The circuit breaker on an injected clock: open period, one probe, release, expiry."""

from __future__ import annotations

from ability_gateway.server.providers.coze.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold=3, cooldown=30.0, probe_timeout=20.0, clock=clock)
    for _ in range(3):
        breaker.record(False, "HTTP 503")
    return breaker


def test_the_breaker_opens_after_the_threshold_and_half_opens_after_the_open_period() -> None:
    clock = Clock()
    breaker = opened(clock)
    assert breaker.state == "open"
    assert not breaker.available()
    assert breaker.reserve() is None
    clock.now += 29.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.available()


def test_half_open_hands_out_one_probe_and_a_success_closes() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    probe = breaker.reserve()
    assert probe is not None
    assert not breaker.available()  # one probe at a time
    assert breaker.reserve() is None
    breaker.record(True)
    assert breaker.state == "closed"
    assert breaker.reason is None
    assert breaker.available()


def test_a_failed_probe_opens_again_for_a_whole_open_period() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    assert breaker.reserve() is not None
    breaker.record(False, "no answer")
    assert breaker.state == "open"
    clock.now += 29
    assert not breaker.available()
    clock.now += 1
    assert breaker.available()


def test_a_released_probe_lets_the_next_task_probe() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    probe = breaker.reserve()
    breaker.release(probe)  # that task never called Coze (a cache hit, a refusal)
    assert breaker.state == "half_open"
    assert breaker.available()
    assert breaker.reserve() is not None


def test_releasing_an_old_probe_does_not_free_a_newer_one() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    first = breaker.reserve()
    breaker.record(False, "no answer")  # its call failed: open again
    clock.now += 30
    second = breaker.reserve()
    assert second is not None
    breaker.release(first)
    assert not breaker.available()


def test_a_probe_that_never_ends_expires() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    assert breaker.reserve() is not None
    clock.now += 19.9
    assert not breaker.available()
    clock.now += 0.1
    assert breaker.available()
    assert breaker.reserve() is not None


def test_a_call_in_progress_holds_a_half_open_breaker_until_it_ends() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    breaker.call_started()  # e.g. a queued task's call, made by the runner: no reservation
    assert not breaker.available()
    assert breaker.reserve() is None
    clock.now += 100  # however long it takes
    assert not breaker.available()
    breaker.call_ended()  # canceled: no outcome, the state stays
    assert breaker.state == "half_open"
    assert breaker.available()


def test_a_reservation_given_back_after_its_call_started_keeps_the_call_counted() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 30
    probe = breaker.reserve()
    breaker.call_started()
    breaker.release(probe)  # the task answered 202 while its call goes on
    assert not breaker.available()
    breaker.record(True)
    breaker.call_ended()
    assert breaker.state == "closed"
