"""Making a client costs httpx and nothing more: the typed models (pydantic, ACP's schema package,
about half a second) are imported at the first answer parsed into one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

MADE = """
import json, sys
from acpd.client import Acpd
Acpd("http://127.0.0.1:9", token="").close()
made = sorted(sys.modules)
from acpd.client import models
models.Session
print(json.dumps({"made": made, "parsed": sorted(sys.modules)}))
"""


def test_a_client_made_imports_no_model_until_an_answer_needs_one() -> None:
    done = subprocess.run([sys.executable, "-c", MADE], capture_output=True, text=True, check=True, timeout=60)
    modules = json.loads(done.stdout)
    assert "httpx" in modules["made"]
    assert [name for name in ("acp", "pydantic", "acpd.api.events") if name in modules["made"]] == []
    assert {"acp", "pydantic"} <= set(modules["parsed"])
