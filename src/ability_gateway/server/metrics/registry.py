"""The metric objects of this process, and ``Metrics``: what the rest of the gateway calls.

The objects are module-level because prometheus-client's values are: in multiprocess mode
each one writes to this process's mmap file under its name, so two objects of one name in a
process would overwrite each other. ``Metrics`` (one per process, built in the lifespan and
held by ``Services``) is the only way in: it makes each label child once, when it is built
or when a label value is first seen, so a request or a step does one dict look-up and one
``inc()``/``observe()`` and allocates nothing. The base class records nothing (metrics off);
``PrometheusMetrics`` records.

    invoke endpoint ──invoke_series(ability, async?)──▶ InvokeSeries.answered / .raised
    tasks/invoke.py ──cache_lookup──┐  deps.py, tasks/invoke.py,
    callbacks/steps.py, service.py ─┤  callbacks/service.py ──refused(reason)
    media/service.py ──media_stored─┘  CozeExecutor.on_call ──coze_observer(executor)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, multiprocess

from ability_gateway.server.errors import GatewayError

if TYPE_CHECKING:
    from ability_gateway.server.abilities.catalog import Catalog
    from ability_gateway.server.providers.coze.client import CozeCall, CozeExecutor, OutcomeKind

# A ``*_created`` series beside every counter doubles what is stored and says little here.
disable_created_metrics()  # type: ignore[no-untyped-call]

OUTCOMES = ("succeeded", "failed", "timeout", "canceled", "accepted", "rejected", "error")
MODES = ("sync", "async")
UNKNOWN_ABILITY = "unknown"
REFUSAL_REASONS = ("rate_limit", "concurrency", "quota", "redelivery")
CIRCUIT_STATES = ("closed", "half_open", "open")
MAX_CODES = 100  # distinct Coze codes labelled per process; the rest are "other"
MAX_TOKENS = 1000  # distinct token ids labelled per process (opt-in); the rest are "other"
MAX_ATTEMPT_LABEL = 10  # scheduled attempt numbers above it share one label, ">10"
# From a cache hit (milliseconds) to the longest wait (`Prefer: wait=60`).
INVOKE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COZE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

INVOCATIONS = Counter(
    "gateway_invocations",
    "Invocations by ability, mode (sync: answered inline; async: 202) and outcome "
    "(succeeded, failed, timeout, canceled: the task's end; accepted: 202; rejected: a 4xx; "
    "error: a 5xx of the gateway's own).",
    ("ability", "mode", "outcome"),
)
TOKEN_INVOCATIONS = Counter(
    "gateway_token_invocations",
    "Invocations by token id and outcome (as gateway_invocations); recorded only with "
    "GATEWAY_METRICS_TOKEN_LABELS=true.",
    ("token", "outcome"),
)
INVOKE_SECONDS = Histogram(
    "gateway_invoke_duration_seconds",
    "Time to answer an invocation that was not rejected, by ability and mode.",
    ("ability", "mode"),
    buckets=INVOKE_BUCKETS,
)
COZE_REQUESTS = Counter(
    "gateway_coze_requests",
    "HTTP calls to Coze by executor, operation, outcome and Coze code (none: no answer).",
    ("executor", "operation", "outcome", "code"),
)
COZE_SECONDS = Histogram(
    "gateway_coze_request_duration_seconds",
    "Duration of one HTTP call to Coze, by executor and operation.",
    ("executor", "operation"),
    buckets=COZE_BUCKETS,
)
CIRCUIT = Gauge(
    "gateway_executor_circuit_state",
    "1 for the current state of each executor's circuit breaker (closed, half_open, open).",
    ("executor", "state"),
    multiprocess_mode="livemax",
)
CALLBACK_ATTEMPTS = Counter(
    "gateway_callback_attempts",
    "Callback attempts by outcome (delivered, retrying, exhausted, gone; a manual "
    "redelivery: delivered or failed) and attempt number (manual for a redelivery).",
    ("outcome", "attempt"),
)
REFUSED = Counter(
    "gateway_requests_refused",
    "Requests answered 429, by reason (rate_limit, concurrency, quota, redelivery).",
    ("reason",),
)
CACHE_LOOKUPS = Counter(
    "gateway_result_cache_lookups",
    "Result-cache look-ups of invocations by ability and result (hit, miss: X-Cache).",
    ("ability", "result"),
)
MEDIA_BYTES = Counter(
    "gateway_media_stored_bytes",
    "Bytes written to media storage (new content only), by kind (image, video) and source "
    "(upload: an imageBase64; output: a mirrored workflow output).",
    ("kind", "source"),
)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, or None (one process, in memory)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def outcome_of(exc: BaseException) -> str:
    """The outcome label of an invocation that ended in an error body."""
    if isinstance(exc, GatewayError):
        ended = exc.extra.get("status")  # the task ended so (tasks/answers.raise_for_task)
        if ended in ("failed", "timeout", "canceled"):
            return str(ended)
        if exc.status_code < 500:
            return "rejected"
    return "error"


class InvokeSeries:
    """The counters of one ability and mode; this base records nothing."""

    __slots__ = ()

    def answered(self, status_code: int, seconds: float) -> None:
        """An answer with a body: 200 (succeeded) or 202 (accepted)."""

    def raised(self, exc: BaseException, seconds: float) -> None:
        """An error body; a rejection is not timed (it says nothing about the ability)."""


class _RecordedSeries(InvokeSeries):
    __slots__ = ("_accepted", "_by_outcome", "_latency", "_rejected", "_succeeded")

    def __init__(self, ability: str, mode: str) -> None:
        self._by_outcome = {o: INVOCATIONS.labels(ability, mode, o) for o in OUTCOMES}
        self._succeeded = self._by_outcome["succeeded"]
        self._accepted = self._by_outcome["accepted"]
        self._rejected = self._by_outcome["rejected"]
        self._latency = INVOKE_SECONDS.labels(ability, mode)

    def answered(self, status_code: int, seconds: float) -> None:
        (self._succeeded if status_code == 200 else self._accepted).inc()
        self._latency.observe(seconds)

    def raised(self, exc: BaseException, seconds: float) -> None:
        outcome = outcome_of(exc)
        self._by_outcome[outcome].inc()
        if outcome != "rejected":
            self._latency.observe(seconds)


_NO_SERIES = InvokeSeries()
CozeObserver = Callable[["CozeCall", "OutcomeKind"], None]


class Metrics:
    """What the gateway records, recording nothing: ``GATEWAY_METRICS_ENABLED=false``, and
    the default of a ``Services`` built without metrics (tests)."""

    enabled = False

    def invoke_series(self, ability_id: str, respond_async: bool) -> InvokeSeries:  # noqa: ARG002
        return _NO_SERIES

    def cache_lookup(self, ability_id: str, hit: bool) -> None:
        pass

    def token_invocation(self, token_id: str, outcome: str) -> None:
        """An invocation's outcome by its token (``GATEWAY_METRICS_TOKEN_LABELS``)."""

    def refused(self, reason: str) -> None:
        """A 429: ``reason`` is one of ``REFUSAL_REASONS``."""

    def delivery_attempt(self, outcome: str, number: int | None) -> None:
        """A callback attempt and what it left the delivery in; ``number`` None: manual."""

    def media_stored(self, content_type: str, size: int, *, source: str) -> None:
        pass

    def watch_executors(self, executors: Iterable[CozeExecutor]) -> None:
        """Observe each executor's Coze calls (``CozeExecutor.on_call``)."""

    def refresh_circuits(self, executors: Iterable[CozeExecutor]) -> None:
        """Set the circuit-state gauge from the breakers (at scrape)."""

    def close(self) -> None:
        """At shutdown: in multiprocess mode, this process's live gauges go."""


class PrometheusMetrics(Metrics):
    """Records into the metric objects above, children made once."""

    enabled = True

    def __init__(self, catalog: Catalog, *, token_labels: bool = False) -> None:
        self._token_labels = token_labels
        self._by_token: dict[tuple[str, str], Counter] = {}
        self._series: dict[str, tuple[InvokeSeries, InvokeSeries]] = {}
        self._cache: dict[str, tuple[Counter, Counter]] = {}
        for ability in catalog.all():
            inline = "sync" if ability.mode == "sync" else "async"
            # respond_async False → the ability's own mode; True → always async.
            self._series[ability.id] = (
                _RecordedSeries(ability.id, inline),
                _RecordedSeries(ability.id, "async"),
            )
            if ability.cache is not None:
                self._cache[ability.id] = (
                    CACHE_LOOKUPS.labels(ability.id, "hit"),
                    CACHE_LOOKUPS.labels(ability.id, "miss"),
                )
        self._unknown = (
            _RecordedSeries(UNKNOWN_ABILITY, "sync"),
            _RecordedSeries(UNKNOWN_ABILITY, "async"),
        )
        self._refused = {reason: REFUSED.labels(reason) for reason in REFUSAL_REASONS}
        self._attempts: dict[tuple[str, int | None], Counter] = {}
        self._media: dict[tuple[str, str], Counter] = {}

    def invoke_series(self, ability_id: str, respond_async: bool) -> InvokeSeries:
        pair = self._series.get(ability_id) or self._unknown
        return pair[respond_async]

    def cache_lookup(self, ability_id: str, hit: bool) -> None:
        pair = self._cache.get(ability_id)
        if pair is None:  # a catalog entry whose cache is off does not look up
            return
        (pair[0] if hit else pair[1]).inc()

    def token_invocation(self, token_id: str, outcome: str) -> None:
        if not self._token_labels:
            return
        key = (token_id, outcome)
        child = self._by_token.get(key)
        if child is None:
            if len(self._by_token) >= MAX_TOKENS * len(OUTCOMES):
                key = ("other", outcome)
                child = self._by_token.get(key)
            if child is None:
                child = self._by_token[key] = TOKEN_INVOCATIONS.labels(*key)
        child.inc()

    def refused(self, reason: str) -> None:
        child = self._refused.get(reason)
        if child is None:
            child = self._refused[reason] = REFUSED.labels(reason)
        child.inc()

    def delivery_attempt(self, outcome: str, number: int | None) -> None:
        key = (outcome, number)
        child = self._attempts.get(key)
        if child is None:
            if number is None:
                label = "manual"
            else:
                label = str(number) if number <= MAX_ATTEMPT_LABEL else f">{MAX_ATTEMPT_LABEL}"
            child = self._attempts[key] = CALLBACK_ATTEMPTS.labels(outcome, label)
        child.inc()

    def media_stored(self, content_type: str, size: int, *, source: str) -> None:
        kind = "video" if content_type.startswith("video/") else "image"
        key = (kind, source)
        child = self._media.get(key)
        if child is None:
            child = self._media[key] = MEDIA_BYTES.labels(kind, source)
        child.inc(size)

    def watch_executors(self, executors: Iterable[CozeExecutor]) -> None:
        for executor in executors:
            executor.on_call = _coze_observer(executor)
        self.refresh_circuits(executors)

    def refresh_circuits(self, executors: Iterable[CozeExecutor]) -> None:
        for executor in executors:
            _set_circuit(executor.id, executor.breaker.state)

    def close(self) -> None:
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _set_circuit(executor_id: str, current: str) -> None:
    for state in CIRCUIT_STATES:
        CIRCUIT.labels(executor_id, state).set(1 if state == current else 0)


def _coze_observer(executor: CozeExecutor) -> CozeObserver:
    """Counts and times each call of ``executor``; after it, the circuit gauge follows the
    breaker when its state changed (so other processes' states reach a multiprocess
    scrape, not only the scraping process's)."""
    executor_id = executor.id
    breaker = executor.breaker
    counts: dict[tuple[str, str, int | None], Counter] = {}
    durations: dict[str, Histogram] = {}
    last_state = [breaker.state]

    def observe(call: CozeCall, kind: OutcomeKind) -> None:
        operation = call.operation
        key = (operation, kind, call.code)
        child = counts.get(key)
        if child is None:
            if call.code is None:
                code = "none"
            else:
                code = str(call.code) if len(counts) < MAX_CODES else "other"
            child = COZE_REQUESTS.labels(executor_id, operation, kind, code)
            if len(counts) < MAX_CODES:
                counts[key] = child
        child.inc()
        duration = durations.get(operation)
        if duration is None:
            duration = durations[operation] = COZE_SECONDS.labels(executor_id, operation)
        duration.observe(call.duration_ms / 1000)
        state = breaker.state
        if state != last_state[0]:
            last_state[0] = state
            _set_circuit(executor_id, state)

    return observe


def metrics_for(enabled: bool, catalog: Catalog, *, token_labels: bool = False) -> Metrics:
    """The process's ``Metrics``: recording, or the no-op when metrics are off."""
    return PrometheusMetrics(catalog, token_labels=token_labels) if enabled else Metrics()
