"""What one gateway process holds for its lifetime, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from ability_gateway.server.abilities.catalog import Catalog
from ability_gateway.server.auth.service import TokenCache
from ability_gateway.server.config import Settings
from ability_gateway.server.db import Database
from ability_gateway.server.executors.registry import ExecutorRegistry


@dataclass(slots=True)
class GatewayState:
    settings: Settings
    db: Database
    catalog: Catalog
    executors: ExecutorRegistry
    token_cache: TokenCache
