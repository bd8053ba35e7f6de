import os
import stat

import pytest

from signer.custody import CustodyError, KmsCustody, LocalKeyFileCustody, custody_from_environ, key_id_of_local_blob


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
