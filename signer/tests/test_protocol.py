import os
import uuid

import pytest

from signer import protocol as p

KEY_ID = uuid.UUID("6f1c9a52-8f7e-4b0a-9d3e-2a5b7c9e1f30")
MATERIAL = p.WrappedKey(wrapped_dek=os.urandom(60), wrapped_key=os.urandom(60))


def _round_trip_request(request):
    frames = p.FrameReader().feed(p.encode_request(request))
    assert len(frames) == 1
    return p.decode_request(*frames[0])


def _round_trip_response(response, op):
    (request_id, status, body), = p.FrameReader().feed(p.encode_response(response))
    return p.decode_response(request_id, status, body, op)


@pytest.mark.parametrize(
    "request_",
    [
        p.PingRequest(1),
        p.CreateRequest(2, KEY_ID),
        p.SignRequest(0xFFFFFFFF, KEY_ID, bytes(range(32)), MATERIAL),
    ],
)
def test_every_request_round_trips(request_):
    assert _round_trip_request(request_) == request_


@pytest.mark.parametrize(
    ("response", "op"),
    [
        (p.PingResult(7, True, 4242), p.Op.PING),
        (p.PingResult(7, True, 4242, (3, 1, 0)), p.Op.PING),
        (p.CreateResult(8, b"\x02" + bytes(32), MATERIAL, "mk-abc"), p.Op.CREATE),
        (p.SignResult(9, bytes(64), 1, b"\x30\x06\x02\x01\x01\x02\x01\x01"), p.Op.SIGN),
        (p.ErrorResult(10, p.Status.UNLOCK_REQUIRED, "unlocking"), p.Op.SIGN),
        (p.ErrorResult(11, p.Status.RETRY_LATER, "custodian unreachable"), p.Op.CREATE),
    ],
)
def test_every_response_round_trips(response, op):
    assert _round_trip_response(response, op) == response


def test_the_reader_splits_frames_however_the_bytes_arrive():
    stream = b"".join(p.encode_request(p.SignRequest(i, KEY_ID, bytes([i]) * 32, MATERIAL)) for i in range(50))
    reader = p.FrameReader()
    frames = []
    for i in range(0, len(stream), 7):  # 7-byte pieces cut through headers and bodies
        frames += reader.feed(stream[i : i + 7])
    assert [p.decode_request(*f).request_id for f in frames] == list(range(50))


def test_the_ping_frame_matches_the_documented_bytes():
    # docs/signer-protocol.md shows these bytes.
    assert p.encode_request(p.PingRequest(1)).hex(" ") == "00 00 00 05 00 00 00 01 01"


def test_the_ping_answer_matches_the_documented_bytes():
    # docs/signer-protocol.md shows these bytes: pid 4242, key cache 3 warm, 1 cool, 0 invalid.
    frame = p.encode_response(p.PingResult(1, True, 4242, (3, 1, 0)))
    assert frame.hex(" ") == "00 00 00 16 00 00 00 01 00 01 00 00 10 92 00 00 00 03 00 00 00 01 00 00 00 00"


def test_a_ping_answer_without_key_cache_counts_is_still_understood():
    (frame,) = p.FrameReader().feed(p.encode_response(p.PingResult(1, True, 4242)))
    assert p.decode_response(*frame, p.Op.PING) == p.PingResult(1, True, 4242, None)


def test_it_refuses_a_frame_longer_than_the_maximum():
    with pytest.raises(p.ProtocolError):
        p.FrameReader().feed((p.MAX_FRAME + 1).to_bytes(4, "big") + bytes(5))


def test_it_refuses_a_sign_request_without_a_32_byte_digest():
    with pytest.raises(p.ProtocolError):
        p.encode_request(p.SignRequest(1, KEY_ID, bytes(31), MATERIAL))
    body = KEY_ID.bytes + bytes(20)
    with pytest.raises(p.ProtocolError):
        p.decode_request(1, p.Op.SIGN, body)


def test_it_refuses_an_unknown_op():
    with pytest.raises(p.ProtocolError):
        p.decode_request(1, 99, b"")


def test_a_sign_frame_with_key_file_material_matches_the_documented_length(tmp_path):
    import asyncio

    from signer.custody import LocalKeyFileCustody
    from signer.engine import Engine

    engine = Engine(LocalKeyFileCustody(tmp_path / "m.json"))
    _, material, _ = asyncio.run(engine.create(KEY_ID))
    frame = p.encode_request(p.SignRequest(7, KEY_ID, bytes(range(32)), material))
    # docs/signer-protocol.md: 77-byte wrapped DEK, 60-byte wrapped key, length 0xc2.
    assert frame[:9].hex(" ") == "00 00 00 c2 00 00 00 07 03"
    assert frame[9:25] == KEY_ID.bytes and frame[57:61].hex(" ") == "00 4d 01 0f"
