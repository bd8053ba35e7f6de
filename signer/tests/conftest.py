import os
import subprocess
import sys

import boto3
import pytest

from signer import keycache
from tests.harness.ports import free_port, wait_for_port


class Clock:
    """The key cache's clock, moved by tests instead of sleeping."""

    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(keycache, "now", c)
    return c


@pytest.fixture(scope="session")
def kms_endpoint():
    """moto's server: the one the distributed run started for S3 if there is one, else our own."""
    if os.environ.get("S3_ENDPOINT_URL"):
        yield os.environ["S3_ENDPOINT_URL"]
        return
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port, process=moto)
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.terminate()
        moto.wait(10)


@pytest.fixture
def kms(kms_endpoint, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("kms", endpoint_url=kms_endpoint, region_name="us-east-1")
    return lambda: client.create_key()["KeyMetadata"]["KeyId"]
