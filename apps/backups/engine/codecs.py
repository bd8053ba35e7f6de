"""The compression codecs of a repository's sealed bodies (docs/backup-format.md, "Codecs").

Imports nothing from Django, like the rest of the engine. A sealed body is one codec byte and
the payload; the byte, not the repository's config, says how to read a body, so a repository
whose codec was changed holds bodies of several codecs and every one of them reads back.

| byte | name | payload                                                                      |
|------|------|------------------------------------------------------------------------------|
| 0    | none | the plaintext                                                                |
| 1    | zstd | one zstd frame, level 3 (content size in the frame header)                   |
| 2    | gzip | one gzip member (RFC 1952): DEFLATE level 6, written by zlib, MTIME 0        |
| 3    | lz4  | one LZ4 frame: level 0, 64 KiB linked blocks, content size, no checksum      |

Checksums inside a payload (gzip's CRC-32) are redundant with AES-GCM's tag and the chunk id;
lz4's optional content checksum is left off for that reason.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import lz4.frame
import zstandard

ZSTD_LEVEL = 3
GZIP_LEVEL = 6
GZIP_WBITS = 31  # zlib's window bits 16 + 15: a gzip container (RFC 1952) around DEFLATE, 32 KiB window
LZ4_LEVEL = 0


class CodecError(ValueError):
    """A codec name or byte this version does not know, or a payload its codec cannot read."""


def _gzip_compress(data: bytes) -> bytes:
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    return packer.compress(data) + packer.flush()


def _gzip_decompress(payload: bytes) -> bytes:
    # Exactly one whole member: zlib.decompress() would silently accept a truncated member's
    # absence of an end or bytes after it.
    unpacker = zlib.decompressobj(GZIP_WBITS)
    data = unpacker.decompress(payload)
    if not unpacker.eof or unpacker.unused_data:
        raise CodecError("gzip payload is not exactly one gzip member")
    return data


@dataclass(frozen=True)
class Codec:
    name: str
    byte: int
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


CODECS = (
    Codec("none", 0, bytes, bytes),
    # A compressor object a call: zstandard's are not safe to share between threads.
    Codec("zstd", 1, lambda data: zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data), lambda payload: zstandard.ZstdDecompressor().decompress(payload)),
    Codec("gzip", 2, _gzip_compress, _gzip_decompress),
    Codec(
        "lz4", 3,
        lambda data: lz4.frame.compress(data, compression_level=LZ4_LEVEL, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=True, content_checksum=False, store_size=True),
        lz4.frame.decompress,
    ),
)
CODEC_NAMES = tuple(codec.name for codec in CODECS)
DEFAULT_CODEC = "zstd"
_BY_NAME = {codec.name: codec for codec in CODECS}
_BY_BYTE = {codec.byte: codec for codec in CODECS}


def codec_named(name: str) -> Codec:
    """The codec called `name` (as in config.json's "compression" and BACKUP_COMPRESSION)."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise CodecError(f"unknown compression {name!r}: one of {', '.join(CODEC_NAMES)}") from None


def body_pack(plaintext: bytes, codec: Codec) -> bytes:
    """Codec byte ‖ payload; the plaintext as it is (byte 0) when the codec does not make it smaller."""
    if codec.byte:
        packed = codec.compress(plaintext)
        if len(packed) < len(plaintext):
            return bytes([codec.byte]) + packed
    return b"\x00" + plaintext


def body_unpack(body: bytes) -> bytes:
    """The plaintext of a body, whichever codec its first byte names."""
    if not body:
        raise CodecError("empty body: no codec byte")
    codec = _BY_BYTE.get(body[0])
    if codec is None:
        raise CodecError(f"unknown codec byte {body[0]} (this version reads {', '.join(f'{c.byte} {c.name}' for c in CODECS)})")
    try:
        return codec.decompress(body[1:])
    except CodecError:
        raise
    except (zstandard.ZstdError, zlib.error, RuntimeError, ValueError) as exc:  # lz4.frame raises RuntimeError
        raise CodecError(f"{codec.name} payload does not decompress ({type(exc).__name__})") from None
