"""A moto S3 server of a test's own, on a free port, that the test may stop and start again.

The harness's moto (tests/harness/distributed.py) is shared by the whole run and must never be
stopped; tests that need the store to go down use one of these.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import boto3

from tests.harness.ports import free_port, wait_for_port

ACCESS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


class MotoS3:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = f"photos-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen | None = None

    def start(self, *, create_bucket: bool = True) -> MotoS3:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        if create_bucket:
            self.client().create_bucket(Bucket=self.bucket)
        return self

    def new_bucket(self) -> None:
        """Switch to a fresh bucket of the same server, so a test sees only its own objects."""
        self.bucket = f"photos-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, **ACCESS)

    def keys(self) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listed.get("Contents", [])]

    def settings(self) -> dict:
        """Settings overrides that point the photos storage at this server."""
        return {
            "S3_BUCKET": self.bucket,
            "STORAGES": {
                "default": {
                    "BACKEND": "storages.backends.s3.S3Storage",
                    "OPTIONS": {
                        "bucket_name": self.bucket, "endpoint_url": self.endpoint, "region_name": "us-east-1",
                        "access_key": "testing", "secret_key": "testing", "addressing_style": "path",
                        "signature_version": "s3v4", "file_overwrite": False, "default_acl": None, "querystring_auth": True,
                    },  # fmt: skip
                },
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            },
        }

    def env(self) -> dict[str, str]:
        """Environment for a server process that stores photos here."""
        return {
            "S3_BUCKET": self.bucket, "S3_ENDPOINT_URL": self.endpoint, "S3_ACCESS_KEY_ID": "testing",
            "S3_SECRET_ACCESS_KEY": "testing", "S3_REGION": "us-east-1",
        }  # fmt: skip
