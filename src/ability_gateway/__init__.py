"""Ability Gateway: one stable REST API over Coze workflows.

This package's top level is the client SDK and needs only httpx and pydantic;
the server lives in :mod:`ability_gateway.server` (install the ``server`` extra).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
