"""What callers of ``tracing`` hold: a span (or the no-op one) and the attribute types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

AttributeValue = str | bool | int | float
SpanKind = Literal["internal", "server", "client"]


class Span:
    """A span being recorded, or (this class itself) none: every method does nothing."""

    __slots__ = ()
    recording = False

    def set(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """Set attributes (those that are None are left out)."""

    def fail(self, description: str) -> None:
        """Mark the span as failed, with why."""


NO_SPAN = Span()
