"""The package's public names."""

from __future__ import annotations

import ability_gateway


def test_all_is_sorted_and_complete() -> None:
    names = list(ability_gateway.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(ability_gateway, name) is not None, name
    public = {n for n in vars(ability_gateway) if not n.startswith("_")}
    # Everything public at the top level is listed (subpackages aside).
    assert public - set(names) <= {"cli", "server", "simulator"}


def test_the_spec_method_names_exist_on_both_clients() -> None:
    for cls in (ability_gateway.Client, ability_gateway.AsyncClient):
        for method in (
            "list_abilities",
            "get_ability",
            "invoke_ability",
            "get_task_status",
            "get_task",
            "cancel_task",
            "list_tasks",
            "list_tasks_page",
            "wait_for_task",
            "invoke_and_wait",
            "get_callbacks",
            "redeliver_callback",
            "close",
        ):
            assert callable(getattr(cls, method)), (cls, method)


BLOCKED = """
import importlib.abc, sys
SERVER_ONLY = {"fastapi", "starlette", "sqlalchemy", "aiosqlite", "alembic", "aiohttp",
               "uvicorn", "pydantic_settings", "yaml", "orjson", "typer", "rich",
               "standardwebhooks", "obstore"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVER_ONLY:
            raise ImportError(f"{name} is blocked")
        return None
sys.meta_path.insert(0, Block())
import base64, hashlib, hmac, time
import ability_gateway as ag
key = b"k" * 32
body = '{"requestId":"r","taskId":"t","abilityId":"a","status":"succeeded"}'
stamp = str(int(time.time()))
sig = base64.b64encode(hmac.new(key, f"m.{stamp}.{body}".encode(), hashlib.sha256).digest())
headers = {"webhook-id": "m", "webhook-timestamp": stamp, "webhook-signature": "v1," + sig.decode()}
payload = ag.verify_callback(body, headers, "whsec_" + base64.b64encode(key).decode())
with ag.Client("http://127.0.0.1:9", "agw_x") as client:
    pass
print(payload.task_id, ag.CallbackDeduplicator().seen("m"))
"""


def test_the_sdk_works_without_server_dependencies() -> None:
    """Clients and verify_callback need only httpx and pydantic (no standardwebhooks)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", BLOCKED], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["t", "False"]
