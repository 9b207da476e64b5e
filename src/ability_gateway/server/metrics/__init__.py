"""Prometheus metrics: what a process records (``registry.py``), what a scrape adds from the
database (``collectors.py``) and ``GET /metrics`` (``endpoints.py``).

    request / job step ──inc, observe──▶ metric objects of this process (registry.py)
                                              │ one process: in memory
                                              │ PROMETHEUS_MULTIPROC_DIR: mmap files, one set
                                              │ per process (prometheus-client's multiprocess
                                              ▼ mode)
    GET /metrics ──▶ a fresh CollectorRegistry per scrape (collectors.py)
                       ├─ this process's metrics, or MultiProcessCollector over every
                       │  process's files (their sum: counters and histograms add up)
                       └─ the database-wide job gauges: one query, registered on the scrape
                          registry only, so N processes never report them N times

**Several processes on one host** (uvicorn/gunicorn workers, ``ability-gateway worker``
beside ``serve``): set ``PROMETHEUS_MULTIPROC_DIR`` to one empty directory, the same for every
process, before they start (prometheus-client picks its storage when it is imported), and
empty it on each deploy. Any process then answers ``/metrics`` for all of them. Counters and
histograms are summed; the circuit-state gauge keeps, per executor and state, the highest
value among live processes (``livemax``: "open on some worker"); a process marks itself dead
at shutdown. Python's process and GC metrics are per process and only served without the
directory. **Several nodes**: Prometheus scrapes each node and ``sum()`` adds them up; the
job gauges read the shared database, so take one node's (``max by (kind)``), not their sum.

**Labels** stay low-cardinality: ability ids from the catalog (an unknown id is
``unknown``), executor ids from the configuration, Coze codes (at most ``MAX_CODES`` distinct
per process, then ``other``), job kinds, fixed outcome words. No task id, no token id.

``GATEWAY_METRICS_ENABLED=false`` gives every part the no-op ``Metrics`` (nothing recorded,
nothing allocated) and ``/metrics`` answers 404.
"""
