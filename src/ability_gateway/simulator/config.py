"""How the simulator behaves: :class:`SimulatorConfig`, its knobs and their checks.

This module owns the configuration the ``coze-sim`` command and :func:`create_app` take,
what each knob does (below) and the validation that refuses a config the simulator could not
honour (a bad URL, an unusable notice secret or OAuth key), so that a mistake fails at start
rather than on the first request.

Knobs:

* ``tokens``: accepted Bearer tokens; anything else is ``4100 authentication is invalid``.
* ``oauth_apps``: ``(app_id, kid, public_key_pem)`` triples, the OAuth service apps whose RS256
  JWTs ``POST /api/permission/oauth2/token`` exchanges for ``czs_…`` access tokens (reference
  §7; see oauth.py for the checks, errors and HTTP statuses). An issued token is accepted as a
  Bearer token on every other route, like ``tokens``, until its ``expires_in``; then it is
  ``4100`` again. The account id in the enterprise path is not checked.
* ``latency_ms``: every run request (sync run or async submit) waits this long before answering,
  with ``asyncio.sleep`` so thousands of requests can wait at once.
* ``fail_rate``: the share of runs that fail with ``720701013`` ("server issues"), decided by a
  ``random.Random(seed)`` draw per run in arrival order, so a given seed replays the same sequence.
  A failing sync run answers the error; a failing async run is submitted fine and its history
  turns ``Fail``. It applies to every workflow run (a failed generation run starts no job) and
  never to job outcomes.
* ``job_fail_rate``: the share of external jobs that end ``failed`` instead of ``succeeded``,
  decided per job from SHA-256 of ``seed`` and the run's input digest (see jobs.py), so the same
  inputs and seed always give the same outcome. ``job_fail_rate=1`` fails every job while the
  submitting runs still succeed.
* ``job_seconds``: how long the external generation jobs take (see jobs.py); may be fractional.
* ``public_url``: the base of returned file URLs; by default the origin the request came in on,
  so whoever called can fetch them.
* ``notify_url`` + ``notify_secret``: send each job's signed completion notice to
  ``{notify_url}/{job_id}`` when it finishes (see notices.py for the format, signature, retries,
  and why jobs finishing while the simulator is down are never notified). ``notify_secret`` is
  ``whsec_<base64 key>`` (Standard Webhooks) or, as a convenience, any other string whose UTF-8
  bytes are the key; it is required with ``notify_url``.
* ``throttle_every``: when ``N > 0``, every Nth request to the run-history route (counted from
  process start, whatever its token or ids) answers HTTP 200
  ``{"code": 4009, "msg": "Request rate exceeded. Please retry later."}`` instead, to exercise
  a poller's backoff. 0 (the default) turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass

from yarl import URL

from ability_gateway.simulator.notices import secret_key
from ability_gateway.simulator.oauth import OAuthServer

__all__ = ["SimulatorConfig"]


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves; see the module docstring for each knob."""

    tokens: tuple[str, ...] = ("pat_simulator",)
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    seed: int = 0
    job_seconds: float = 5.0
    public_url: str | None = None
    job_fail_rate: float = 0.0
    notify_url: str | None = None
    notify_secret: str | None = None
    throttle_every: int = 0
    oauth_apps: tuple[tuple[str, str, str], ...] = ()
    allow_remote_images: bool = False  # download source images from beyond loopback

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("at least one accepted token is required")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        if self.job_seconds < 0:
            raise ValueError("job_seconds must not be negative")
        if not 0.0 <= self.job_fail_rate <= 1.0:
            raise ValueError("job_fail_rate must be between 0 and 1")
        if self.throttle_every < 0:
            raise ValueError("throttle_every must not be negative")
        for name in ("public_url", "notify_url"):
            value = getattr(self, name)
            if value is not None:
                url = URL(value)
                if url.scheme not in ("http", "https") or not url.host:
                    raise ValueError(f"{name} must be an absolute http(s) URL, got {value!r}")
        if self.notify_secret is not None:
            secret_key(self.notify_secret)  # raises ValueError when unusable
        if self.notify_url is not None and self.notify_secret is None:
            raise ValueError("notify_secret is required with notify_url")
        OAuthServer(self.oauth_apps)  # raises ValueError for a bad key or a duplicate kid
