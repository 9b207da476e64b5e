"""The OpenAPI document is part of the contract: a change to it must be deliberate.

When the API changes on purpose, regenerate the snapshot with ``make openapi`` and review
the diff of ``tests/openapi.json`` with the change.
"""

from __future__ import annotations

import json
from pathlib import Path

from ability_gateway.server.app import create_app
from ability_gateway.server.config import Settings

SNAPSHOT = Path(__file__).with_name("openapi.json")


def current_document() -> str:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    document = create_app(settings).openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_openapi_matches_the_snapshot() -> None:
    assert SNAPSHOT.exists(), "no snapshot: run `make openapi`"
    assert current_document() == SNAPSHOT.read_text(encoding="utf-8"), (
        "the API changed: if on purpose, run `make openapi` and commit tests/openapi.json"
    )


if __name__ == "__main__":
    SNAPSHOT.write_text(current_document(), encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
