"""A local stand-in for the Coze workflow Open API, serving the platform's nine workflows.

It answers like the cloud API (``reference/coze-workflow-api.md`` §1–3, §5, §7): same routes,
envelopes, error codes, log ids, async runs with double-encoded run history, the OAuth JWT token
exchange; and it serves real PNG files for the image outputs. The three generation workflows start
external jobs, which are resolved by a query workflow or by signed completion notices (Standard
Webhooks). It backs the tests, the demo and the benchmarks; start it with
``ability-gateway coze-sim`` or build it in-process with :func:`create_app`.

Modules: ``app`` (the route table, assembly, serving), ``config`` (the knobs), ``state`` (what
outlives a request), ``envelope`` (answer bodies, log ids), ``routes_runs`` (run, run history, job
routes), ``run_request`` (parsing a run body), ``routes_oauth`` and ``routes_files`` (their
routes), ``workflows`` (the registry of the nine), ``definition`` (what a workflow is: parameters,
binding, failures), ``behaviours`` (what each one returns), ``runs`` (run records), ``jobs``
(external generation jobs), ``notices`` (signed completion notices), ``oauth`` (the OAuth JWT
token exchange), ``files`` (file URL scheme), ``png`` (encoder), ``imagesize`` and ``sources``
(reading a source image's size), ``protocol`` (wire constants).
"""

from ability_gateway.simulator.app import SimulatorConfig, create_app, serve

__all__ = ["SimulatorConfig", "create_app", "serve"]
