import os
import stat
import subprocess
import sys

import boto3
import pytest

from signer.custody import CustodyError, KmsCustody, LocalKeyFileCustody, custody_from_environ, key_id_of_local_blob
from tests.harness.ports import free_port, wait_for_port


def test_the_local_master_key_file_is_created_readable_by_its_owner_only(tmp_path):
    custody = LocalKeyFileCustody(tmp_path / "signer" / "master-key.json")
    assert stat.S_IMODE(custody.path.stat().st_mode) == 0o600
    blob, master = custody.wrap(b"k" * 32, context=b"key-1")
    assert master == custody.current_key_id()
    assert custody.unwrap(blob, context=b"key-1") == b"k" * 32


def test_it_refuses_a_master_key_file_others_can_read(tmp_path):
    path = tmp_path / "master-key.json"
    LocalKeyFileCustody(path)
    os.chmod(path, 0o644)
    with pytest.raises(CustodyError, match="readable by others"):
        LocalKeyFileCustody(path)


def test_a_wrapped_data_key_does_not_open_under_another_context(tmp_path):
    custody = LocalKeyFileCustody(tmp_path / "m.json")
    blob, _ = custody.wrap(b"k" * 32, context=b"key-1")
    with pytest.raises(CustodyError):
        custody.unwrap(blob, context=b"key-2")


def test_rotation_rewraps_under_the_new_key_and_retires_the_old_one(tmp_path):
    custody = LocalKeyFileCustody(tmp_path / "m.json")
    blob, old = custody.wrap(b"d" * 32, context=b"c")
    other_process = LocalKeyFileCustody(tmp_path / "m.json")  # a signer that loaded the file before
    new = custody.rotate()
    rewrapped, master = custody.rewrap(blob, context=b"c")
    assert master == new != old and key_id_of_local_blob(rewrapped) == new
    assert custody.retire(keep={new}) == [old]
    with pytest.raises(CustodyError):
        custody.unwrap(blob, context=b"c")
    # The other process picks the new file up: it opens the new blob and wraps under the new key.
    assert other_process.unwrap(rewrapped, context=b"c") == b"d" * 32
    assert other_process.wrap(b"e" * 32, context=b"c")[1] == new


@pytest.fixture(scope="module")
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


def test_kms_custody_wraps_and_unwraps_through_kms(kms, kms_endpoint):
    custody = custody_from_environ({"SIGNING_KMS_KEY_ID": kms(), "SIGNING_KMS_ENDPOINT_URL": kms_endpoint})
    assert isinstance(custody, KmsCustody)
    blob, _ = custody.wrap(b"k" * 32, context=b"key-1")
    assert b"k" * 32 not in blob
    assert custody.unwrap(blob, context=b"key-1") == b"k" * 32
    with pytest.raises(CustodyError):
        custody.unwrap(blob, context=b"key-2")


def test_kms_rotation_reencrypts_onto_the_new_key(kms, kms_endpoint):
    first = KmsCustody(key_id=kms(), endpoint_url=kms_endpoint)
    blob, _ = first.wrap(b"d" * 32, context=b"c")
    second = KmsCustody(key_id=kms(), endpoint_url=kms_endpoint)
    rewrapped, master = second.rewrap(blob, context=b"c")
    assert master == second.key_id
    assert second.unwrap(rewrapped, context=b"c") == b"d" * 32
