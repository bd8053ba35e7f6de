"""schemathesis against /api/schema/ of a live server: no 5xx, no answer outside the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from homepocket_client import DeviceIdentity

pytestmark = pytest.mark.e2e


# - the path's book_id is alice's, so the operations reach their logic instead of 404ing, and
#   the device_id it may revoke is bob's, not that of the token it uses;
# - exchange never long-polls (wait=0): a fuzzer chaining generate -> exchange would otherwise
#   wait up to 30 s per call;
# - a schema-valid pairing code is still refused when no such code is live (400
#   INVALID_SHORT_CODE): the schema cannot know which codes are live, so 400 is an expected
#   answer to schema-valid data there.
# - share delivery's request: 66 hex characters starting 02/03 are schema-valid but only about
#   half of them are points of secp256k1 (400 INVALID_ARGUMENT), and a schema-valid timestamp
#   far from now is refused as REPLAY_DETECTED (400); neither can be said in OpenAPI.
CONFIG = """
[parameters]
book_id = "{book_id}"
device_id = "{device_id}"
wait = 0

[[operations]]
include-operation-id = "pairing_verify"
checks.positive_data_acceptance.expected-statuses = ["200", "400", "401", "409", "429"]

[[operations]]
include-operation-id = "pairing_exchange"
checks.positive_data_acceptance.expected-statuses = ["200", "400", "401", "403"]

[[operations]]
include-operation-id = "backup_delivery_request"
checks.positive_data_acceptance.expected-statuses = ["200", "400", "401", "404", "409", "429", "503"]
"""


def test_the_api_conforms_to_its_schema(live, api, tmp_path):
    alice = DeviceIdentity.new("schemathesis")
    api.create_book(alice)
    bob = DeviceIdentity.new("the device schemathesis may revoke")
    api.pairing_verify(bob, api.pairing_generate(alice).short_code)
    (tmp_path / "schemathesis.toml").write_text(CONFIG.format(book_id=alice.book_id, device_id=bob.device_id))
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{live.url}/api/schema/",
        "--checks", "all",
        "--phases", "coverage,fuzzing,stateful",
        "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "60"),
        "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261124"),
        "--workers", "1",
        # The staff endpoints (server backups, recovery, validation, compliance: half the
        # operations) take an admin session: to this device token each is the same 403, which
        # apps/backups/engine/tests check per role. Fuzzing them doubled this test's time.
        "--exclude-tag", "server backups",
        "--header", f"Authorization: Bearer {alice.book_token(lifetime_seconds=3600)}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # Warnings may remain (generated book ids and codes that match nothing); failures may not.
    assert "Failures:" not in result.stdout and "Errors:" not in result.stdout, result.stdout[-6000:]
