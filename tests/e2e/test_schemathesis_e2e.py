"""schemathesis against /api/schema/ of a live server: no 5xx, no answer outside the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from homepocket_client import DeviceIdentity

pytestmark = pytest.mark.e2e


def test_the_api_conforms_to_its_schema(live, api, tmp_path):
    alice = DeviceIdentity.new("schemathesis")
    api.create_book(alice)
    # The path's book_id is alice's, so the operations reach their logic instead of 404ing.
    (tmp_path / "schemathesis.toml").write_text(f'[parameters]\nbook_id = "{alice.book_id}"\n')
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{live.url}/api/schema/",
        "--checks", "all",
        "--phases", "coverage,fuzzing,stateful",
        "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "60"),
        "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261124"),
        "--workers", "1",
        "--header", f"Authorization: Bearer {alice.book_token(lifetime_seconds=3600)}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
