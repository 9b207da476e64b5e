"""One scrape: this process's metrics (or every process's, in multiprocess mode) and the
database-wide job gauges, rendered in the Prometheus text format.

A fresh ``CollectorRegistry`` per scrape holds both: the job gauges come from one query made
here, at scrape, and are registered on that registry alone, never in the mmap files, so a
scrape reports them once however many processes record metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from ability_gateway.server.db import Database
from ability_gateway.server.metrics.registry import multiprocess_dir
from ability_gateway.server.runner import repository as jobs
from ability_gateway.server.runner.repository import KindCounts


class JobsCollector:
    """The job gauges of one scrape, from counts read just before it."""

    def __init__(self, counts: Iterable[KindCounts], kinds: Iterable[str] = ()) -> None:
        by_kind = {c.kind: c for c in counts}
        # Every known kind gets a sample (0 when idle), so a series does not vanish.
        for kind in kinds:
            by_kind.setdefault(kind, KindCounts(kind, 0, 0, 0, 0))
        self._counts = [by_kind[k] for k in sorted(by_kind)]

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "gateway_jobs_running",
            "Job steps in flight on every node (leased jobs).",
            labels=["kind"],
        )
        queued = GaugeMetricFamily(
            "gateway_jobs_queued", "Queued jobs, due now or later, on every node.", labels=["kind"]
        )
        due = GaugeMetricFamily(
            "gateway_jobs_due", "Queued jobs whose time has come (the backlog).", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "gateway_jobs_oldest_due_age_seconds",
            "How long the oldest due job has waited for a runner (0: none is due).",
            labels=["kind"],
        )
        for c in self._counts:
            running.add_metric([c.kind], c.running)
            queued.add_metric([c.kind], c.queued)
            due.add_metric([c.kind], c.due)
            oldest.add_metric([c.kind], c.oldest_due_ms / 1000)
        yield from (running, queued, due, oldest)


class _ThisProcess:
    """The default registry's metrics (the gateway's and Python's process metrics)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


async def render(db: Database, kinds: Iterable[str] = ()) -> bytes:
    """The text of one scrape; ``kinds``: the job kinds to report even when idle."""
    async with db.read() as conn:
        counts = await jobs.active_counts(conn)
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path is not None:
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(JobsCollector(counts, kinds))
    return generate_latest(registry)
