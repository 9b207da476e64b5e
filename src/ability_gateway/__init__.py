"""Ability Gateway: one stable REST API over Coze workflows.

This package's top level is the client SDK and needs only httpx and pydantic;
the server lives in :mod:`ability_gateway.server` (install the ``server`` extra).

    from ability_gateway import Client

    with Client("http://127.0.0.1:8080", "agw_…") as client:
        result = client.invoke_and_wait("ability_coze_prompt_extract", {"url": "https://…"})
        print(result.texts)
"""

from ability_gateway._async_client import AsyncClient
from ability_gateway._callbacks import CallbackDeduplicator, verify_callback
from ability_gateway._errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    CallbackVerificationError,
    ConflictError,
    FieldError,
    GatewayError,
    GatewayTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    error_from_response,
)
from ability_gateway._models import (
    Ability,
    CallbackPayload,
    CallbackSummary,
    Deliveries,
    Delivery,
    DeliveryAttempt,
    InputField,
    InputSchema,
    InvokeResult,
    Media,
    Task,
    TaskPage,
)
from ability_gateway._sync_client import Client
from ability_gateway._version import __version__

__all__ = [
    "APIConnectionError",
    "Ability",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "CallbackDeduplicator",
    "CallbackPayload",
    "CallbackSummary",
    "CallbackVerificationError",
    "Client",
    "ConflictError",
    "Deliveries",
    "Delivery",
    "DeliveryAttempt",
    "FieldError",
    "GatewayError",
    "GatewayTimeoutError",
    "InputField",
    "InputSchema",
    "InvokeResult",
    "Media",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "Task",
    "TaskPage",
    "UpstreamError",
    "__version__",
    "error_from_response",
    "verify_callback",
]
