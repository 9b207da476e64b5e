"""The SDK part of the package imports with only httpx + pydantic."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import importlib.abc, sys
SERVER_ONLY = {"fastapi", "starlette", "sqlalchemy", "aiosqlite", "alembic", "aiohttp",
               "uvicorn", "pydantic_settings", "yaml", "orjson", "typer", "rich"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVER_ONLY:
            raise ImportError(f"{name} is blocked")
        return None
sys.meta_path.insert(0, Block())
import ability_gateway
print(ability_gateway.__version__)
"""


def test_sdk_imports_without_server_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_all_is_sorted() -> None:
    import ability_gateway

    assert list(ability_gateway.__all__) == sorted(ability_gateway.__all__)
