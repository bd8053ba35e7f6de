"""Selectable chunk codecs (zstd, gzip, lz4, none), in a directory and on S3 (moto's server over HTTP).

The bodies are read back here as docs/backup-format.md describes them, with the keys unwrapped
from keys/<key id>.key and the codecs' own standard decoders (gzip, lz4.frame, zstandard), so the
documented format is pinned, not only the engine's round trip.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from io import StringIO

import lz4.frame
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from apps.backups.engine import services
from apps.backups.engine.repo_keys import DATA_KEY_CONTEXT_PREFIX
from apps.backups.engine.repository import Repository, RepositoryError

MiB = 1024 * 1024
CODECS = {"none": 0, "zstd": 1, "gzip": 2, "lz4": 3}
STANDARD_DECODERS = {
    "zstd": lambda payload: zstandard.ZstdDecompressor().decompress(payload),
    "gzip": gzip.decompress,
    "lz4": lz4.frame.decompress,
}


@pytest.fixture(params=["directory", "s3"])
def location(request, tmp_path):
    """(location, s3 options) of a repository of this test's own: a directory, or a prefix in a bucket of its own."""
    if request.param == "directory":
        return tmp_path / "repo", None
    return request.getfixturevalue("s3_repository")


@pytest.fixture
def sources(tmp_path):
    """Random (incompressible) bytes and ledger-like text, as (name in the snapshot, path)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(os.urandom(MiB + 12345))
    (src / "text.txt").write_bytes(b"".join(b"row %08d: family ledger entry, amount %d\n" % (i, i * 7 % 1000) for i in range(40_000)))
    return [("objects/random.bin", src / "random.bin"), ("database/text.txt", src / "text.txt")]


def _restored_equal(repo: Repository, snapshot_id: str, sources, to) -> bool:
    repo.restore(snapshot_id, to=to)
    return all((to / name).read_bytes() == path.read_bytes() for name, path in sources)


def _blob_key(repo: Repository, custody, blob: bytes) -> bytes:
    """The data key a version-3 blob names in its header, unwrapped from keys/<key id>.key as the format doc says."""
    assert blob[:4] == b"HPB3"
    key_id = blob[4:20]
    config = json.loads(repo.store.read("config.json"))
    keyfile = json.loads(repo.store.read(f"keys/{key_id.hex()}.key"))
    context = DATA_KEY_CONTEXT_PREFIX + bytes.fromhex(config["repository_id"]) + key_id
    return custody.unwrap(bytes.fromhex(keyfile["wrapped_key"]), context=context)


def _bodies(repo: Repository, custody, manifest: dict) -> dict[str, bytes]:
    """{file name: the sealed body (codec byte ‖ payload) of its first chunk}, opened as the format doc says."""
    bodies = {}
    for entry in manifest["files"]:
        chunk_id = entry["chunks"][0]
        blob = repo.store.read(f"data/{chunk_id[:2]}/{chunk_id}")
        bodies[entry["name"]] = AESGCM(_blob_key(repo, custody, blob)).decrypt(blob[20:32], blob[32:], b"chunk:" + bytes.fromhex(chunk_id))
    return bodies


def _seal_with_codec_byte(repo: Repository, custody, *, chunk_id: str, codec_byte: int, payload: bytes) -> bytes:
    """A well-sealed chunk blob, under the chunk's own key, whose body names `codec_byte` (what a later version with a new codec would write)."""
    header = repo.store.read(f"data/{chunk_id[:2]}/{chunk_id}")[:20]
    nonce = os.urandom(12)
    return header + nonce + AESGCM(_blob_key(repo, custody, header)).encrypt(nonce, bytes([codec_byte]) + payload, b"chunk:" + bytes.fromhex(chunk_id))


# -- one codec, backup and restore ----------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_a_snapshot_round_trips_byte_for_byte_with_each_codec(codec, location, sources, custody, tmp_path):
    where, options = location
    repo = Repository.init(where, custody=custody, s3_options=options, compression=codec)
    manifest = repo.snapshot_create(sources, meta={"kind": "test"})
    reopened = Repository.open(where, custody=custody, s3_options=options)
    assert reopened.compression == codec
    assert _restored_equal(reopened, manifest["id"], sources, tmp_path / "out")
    assert reopened.verify().ok


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_writes_the_documented_body(codec, location, sources, custody):
    where, options = location
    repo = Repository.init(where, custody=custody, s3_options=options, compression=codec)
    manifest = repo.snapshot_create(sources, meta={})
    bodies = _bodies(repo, custody, manifest)
    text = bodies["database/text.txt"]
    assert text[0] == CODECS[codec]
    plaintext = text[1:] if codec == "none" else STANDARD_DECODERS[codec](text[1:])
    assert len(plaintext) >= 256 * 1024 and sources[1][1].read_bytes().startswith(plaintext)  # the file's first chunk
    # Random bytes do not shrink: stored as they are, whatever the codec.
    random_body = bodies["objects/random.bin"]
    assert random_body[0] == 0 and random_body[1:] == sources[0][1].read_bytes()[: len(random_body) - 1]


def test_gzip_bodies_are_single_gzip_members_a_standard_tool_reads(tmp_path, sources, custody):
    repo = Repository.init(tmp_path / "repo", custody=custody, compression="gzip")
    body = _bodies(repo, custody, repo.snapshot_create(sources, meta={}))["database/text.txt"]
    assert body[1:3] == b"\x1f\x8b" and body[3] == 8  # RFC 1952 magic, CM = DEFLATE
    assert int.from_bytes(body[5:9], "little") == 0  # MTIME 0: the same chunk seals to the same payload


def test_the_format_version_says_whether_a_version_1_reader_can_read_it(tmp_path, custody):
    for codec, version in (("none", 1), ("zstd", 1), ("gzip", 2), ("lz4", 2)):
        repo = Repository.init(tmp_path / codec, custody=custody, compression=codec)
        assert json.loads(repo.store.read("config.json"))["version"] == version, codec


# -- changing the codec of a repository -----------------------------------------------------------


def test_old_snapshots_restore_after_the_codec_changed_twice(location, sources, custody, tmp_path):
    where, options = location
    repo = Repository.init(where, custody=custody, s3_options=options, compression="gzip")
    first = repo.snapshot_create(sources, meta={})
    (sources[1][1]).write_bytes(sources[1][1].read_bytes().replace(b"family", b"FAMILY"))  # new chunks for the text
    assert repo.compression_set("lz4") == "gzip"
    second = repo.snapshot_create(sources, meta={})
    # Chunk ids do not depend on the codec: the unchanged random file deduplicates against gzip-era chunks.
    assert second["stats"]["chunks_new"] <= len(second["files"][1]["chunks"])
    (sources[1][1]).write_bytes(sources[1][1].read_bytes().replace(b"ledger", b"LEDGER"))
    Repository.open(where, custody=custody, s3_options=options).compression_set("zstd")
    reopened = Repository.open(where, custody=custody, s3_options=options)
    third = reopened.snapshot_create(sources, meta={})

    text_codecs = [_bodies(reopened, custody, m)["database/text.txt"][0] for m in (first, second, third)]
    assert text_codecs == [2, 3, 1]  # one repository, three codecs
    assert reopened.verify().ok
    for manifest in (first, second, third):
        out = tmp_path / f"out-{manifest['id']}"
        reopened.restore(manifest["id"], to=out)  # each file checked against its recorded SHA-256 as it lands
        for entry in manifest["files"]:
            assert hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    assert _restored_equal(reopened, third["id"], sources, tmp_path / "latest")
    # Once it holds blobs under snapshot keys it is version 3 (which reads gzip and lz4 too), whatever the codec.
    assert reopened.config == json.loads(reopened.store.read("config.json")) and reopened.config["version"] == 3


def test_a_switch_from_a_stale_handle_never_lowers_the_version_another_set(tmp_path, custody):
    stale = Repository.init(tmp_path / "repo", custody=custody)
    Repository.open(tmp_path / "repo", custody=custody).compression_set("lz4")  # another process: version 2
    assert stale.compression_set("none") == "lz4"
    assert json.loads(stale.store.read("config.json"))["version"] == 2


def test_a_repository_keeps_its_codec_whatever_the_setting_says_later(location, sources, custody):
    where, options = location
    Repository.open_or_init(where, custody=custody, s3_options=options, compression="lz4")
    repo = Repository.open_or_init(where, custody=custody, s3_options=options, compression="gzip")
    assert repo.compression == "lz4"
    assert _bodies(repo, custody, repo.snapshot_create(sources, meta={}))["database/text.txt"][0] == 3


# -- unknown codecs -------------------------------------------------------------------------------


def test_an_unknown_codec_name_makes_no_repository(tmp_path, custody):
    with pytest.raises(RepositoryError, match="unknown compression 'brotli': one of none, zstd, gzip, lz4"):
        Repository.init(tmp_path / "repo", custody=custody, compression="brotli")
    assert not Repository.exists_at(tmp_path / "repo")


def test_switching_to_an_unknown_codec_changes_nothing(location, custody):
    where, options = location
    repo = Repository.init(where, custody=custody, s3_options=options)
    before = repo.store.read("config.json")
    with pytest.raises(RepositoryError, match="unknown compression 'brotli'"):
        repo.compression_set("brotli")
    assert repo.store.read("config.json") == before and repo.compression == "zstd"


def test_an_unknown_codec_byte_is_refused_naming_it(location, sources, custody, tmp_path):
    where, options = location
    repo = Repository.init(where, custody=custody, s3_options=options)
    manifest = repo.snapshot_create(sources, meta={})
    chunk_id = manifest["files"][1]["chunks"][0]
    repo.store.replace(f"data/{chunk_id[:2]}/{chunk_id}", _seal_with_codec_byte(repo, custody, chunk_id=chunk_id, codec_byte=9, payload=b"from the future"))
    with pytest.raises(RepositoryError, match=f"chunk {chunk_id}: unknown codec byte 9"):
        repo.restore(manifest["id"], to=tmp_path / "out")
    problems = repo.verify().problems
    assert {"kind": "corrupt_chunk", "chunk": chunk_id} == {k: problems[0][k] for k in ("kind", "chunk")}
    assert "unknown codec byte 9" in problems[0]["detail"]


def test_a_known_codec_byte_over_a_payload_it_cannot_read_is_a_repository_error(tmp_path, sources, custody):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    manifest = repo.snapshot_create(sources, meta={})
    chunk_id = manifest["files"][1]["chunks"][0]
    repo.store.replace(f"data/{chunk_id[:2]}/{chunk_id}", _seal_with_codec_byte(repo, custody, chunk_id=chunk_id, codec_byte=3, payload=b"not an lz4 frame"))
    with pytest.raises(RepositoryError, match=f"chunk {chunk_id}: lz4 payload does not decompress"):
        repo.chunk_get(chunk_id)


def test_a_config_naming_a_codec_this_version_lacks_restores_but_refuses_to_write(tmp_path, sources, custody):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    manifest = repo.snapshot_create(sources, meta={})
    config = json.loads(repo.store.read("config.json"))
    repo.store.replace("config.json", json.dumps({**config, "compression": "brotli"}).encode())
    later = Repository.open(tmp_path / "repo", custody=custody)
    assert _restored_equal(later, manifest["id"], sources, tmp_path / "out")
    with pytest.raises(RepositoryError, match="cannot write to .*unknown compression 'brotli'"):
        later.snapshot_create(sources, meta={})


# -- the setting and the command ------------------------------------------------------------------


def test_an_unknown_backup_compression_setting_fails_the_start_up_checks(settings):
    settings.BACKUP_COMPRESSION = "brotli"
    errors = [e for e in run_checks() if e.id == "backups.E001"]
    assert len(errors) == 1 and "'brotli'" in errors[0].msg and "zstd" in errors[0].hint


def test_a_known_backup_compression_setting_passes_the_start_up_checks(settings):
    settings.BACKUP_COMPRESSION = "lz4"
    assert not [e for e in run_checks() if e.id == "backups.E001"]


def _backup(*args) -> str:
    out = StringIO()
    call_command("backup", *args, stdout=out, stderr=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("codec", ["gzip", "lz4"])
def test_backup_compression_chooses_the_codec_of_a_new_repository(codec, repository_dir, settings):
    settings.BACKUP_COMPRESSION = codec
    _backup("run", "--database-only")
    repo = services.backup_repository_open()
    assert repo.compression == codec and json.loads((repository_dir / "config.json").read_text())["compression"] == codec
    assert services.backup_test_restore()["ok"]  # every table as the snapshot recorded it


@pytest.mark.django_db(transaction=True)
def test_the_command_switches_codecs_and_every_snapshot_still_restores(repository_dir, settings):
    settings.BACKUP_COMPRESSION = "zstd"
    _backup("run", "--database-only")
    # The backup sealed under a snapshot key: version 3, which a codec change never lowers.
    assert _backup("compression") == "compression: zstd (format version 3)\n"
    assert "zstd -> lz4 (format version 3)" in _backup("compression", "lz4")
    _backup("run", "--database-only")
    assert "lz4 -> gzip" in _backup("compression", "gzip")
    _backup("run", "--database-only")
    snapshot_ids = services.backup_repository_open().snapshot_ids()
    assert len(snapshot_ids) == 3
    for snapshot_id in snapshot_ids:
        assert services.backup_test_restore(snapshot_id=snapshot_id)["ok"]
    assert "ok: 3 snapshots" in _backup("verify")


@pytest.mark.django_db(transaction=True)
def test_an_unknown_codec_is_a_clear_command_error(repository_dir, settings):
    _backup("run", "--database-only")
    with pytest.raises(CommandError, match="invalid choice: 'brotli'"):
        _backup("compression", "brotli")
    settings.BACKUP_COMPRESSION = "brotli"
    settings.BACKUP_REPOSITORY_DIR = repository_dir.parent / "another-repo"
    with pytest.raises(CommandError, match="unknown compression 'brotli': one of none, zstd, gzip, lz4"):
        _backup("run", "--database-only")
    assert not settings.BACKUP_REPOSITORY_DIR.exists()
