"""The README's SDK examples run as written against a real gateway (as against `make demo`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveGateway

README = Path(__file__).resolve().parents[1] / "README.md"


def sdk_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python SDK") : text.index("## Command line")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("number", [0, 1])
def test_readme_sdk_example_runs(live_gateway: LiveGateway, sim_url: str, number: int) -> None:
    code = sdk_examples()[number].replace("http://127.0.0.1:8090", sim_url)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "GATEWAY_URL": live_gateway.url, "GATEWAY_TOKEN": live_gateway.token},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if number == 0:
        assert "ability_coze_prompt_extract 提示词提取" in result.stdout
        assert "/media/" in result.stdout
        assert "BadRequestError" in result.stdout
    else:
        assert result.stdout.startswith("succeeded")
