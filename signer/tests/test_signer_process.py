"""The real `python -m signer` process on a Unix socket, spoken to in raw protocol frames."""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from coincurve import PublicKey

from signer import protocol as p

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def metrics_port():
    from tests.harness.ports import free_port

    return free_port()


@pytest.fixture
def signer_socket(tmp_path, metrics_port):
    path = tmp_path / "s.sock"
    env = {**os.environ, "HOMEPOCKET_VAR_DIR": str(tmp_path / "var")}
    argv = [sys.executable, "-m", "signer", "--socket", str(path), "--metrics-port", str(metrics_port)]
    process = subprocess.Popen(argv, cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 20
    while not path.exists():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield path
    process.terminate()
    process.wait(10)


def _exchange(sock, requests):
    sock.sendall(b"".join(p.encode_request(r) for r in requests))
    ops = {r.request_id: type(r) for r in requests}
    op_of = {p.PingRequest: p.Op.PING, p.CreateRequest: p.Op.CREATE, p.SignRequest: p.Op.SIGN}
    reader, answers = p.FrameReader(), {}
    while len(answers) < len(requests):
        for request_id, status, body in reader.feed(sock.recv(65536)):
            answers[request_id] = p.decode_response(request_id, status, body, op_of[ops[request_id]])
    return answers


def test_the_signer_answers_many_requests_in_flight_on_one_connection(signer_socket):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(signer_socket))
        key_id = uuid.uuid4()
        answers = _exchange(sock, [p.PingRequest(1), p.CreateRequest(2, key_id)])
        assert answers[1].rng_ok
        created = answers[2]
        assert len(created.public_key) == 33
        digests = {100 + i: os.urandom(32) for i in range(200)}
        answers = _exchange(sock, [p.SignRequest(i, key_id, d, created.material) for i, d in digests.items()])
        public_key = PublicKey(created.public_key)
        for request_id, digest in digests.items():
            sig = answers[request_id]
            recoverable = sig.signature + bytes([sig.recovery_id])
            assert PublicKey.from_signature_and_message(recoverable, digest, hasher=None) == public_key


def test_ping_reports_the_private_keys_in_the_cache_by_state(signer_socket):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(signer_socket))
        assert _exchange(sock, [p.PingRequest(1)])[1].key_cache == (0, 0, 0)
        _exchange(sock, [p.CreateRequest(2, uuid.uuid4()), p.CreateRequest(3, uuid.uuid4())])
        assert _exchange(sock, [p.PingRequest(4)])[4].key_cache == (2, 0, 0)  # a created key is cached WARM


def test_the_socket_is_private_to_its_owner(signer_socket):
    assert signer_socket.stat().st_mode & 0o077 == 0


def test_a_malformed_frame_gets_bad_request_and_the_connection_goes_on(signer_socket):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(signer_socket))
        sock.sendall(p.HEADER.pack(5 + 3, 9, p.Op.SIGN) + b"abc")
        (request_id, status, _), = p.FrameReader().feed(sock.recv(65536))
        assert (request_id, status) == (9, p.Status.BAD_REQUEST)
        assert _exchange(sock, [p.PingRequest(10)])[10].rng_ok


def test_the_signer_exports_sign_latency_by_phase_and_answer_counts(signer_socket, metrics_port):
    import urllib.request

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(signer_socket))
        key_id = uuid.uuid4()
        created = _exchange(sock, [p.CreateRequest(1, key_id)])[1]
        _exchange(sock, [p.SignRequest(2, key_id, bytes(32), created.material)])
        other_created = _exchange(sock, [p.CreateRequest(3, uuid.uuid4())])[3]
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for phase in ("queue", "cache", "sign", "total"):
        assert f'homepocket_sign_latency_seconds_count{{phase="{phase}"}} 1.0' in text
    assert 'homepocket_signer_answers_total{op="create",status="ok"} 2.0' in text
    assert other_created.public_key != created.public_key


def test_a_signer_with_kms_custody_creates_and_signs(tmp_path, kms, kms_endpoint):
    path = tmp_path / "kms.sock"
    env = {**os.environ, "HOMEPOCKET_VAR_DIR": str(tmp_path / "var"), "SIGNING_KMS_KEY_ID": kms(),
           "SIGNING_KMS_ENDPOINT_URL": kms_endpoint}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "signer", "--socket", str(path)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            key_id = uuid.uuid4()
            created = _exchange(sock, [p.CreateRequest(1, key_id)])[1]
            assert created.master_key_id == env["SIGNING_KMS_KEY_ID"]
            signed = _exchange(sock, [p.SignRequest(2, key_id, bytes(32), created.material)])[2]
            recovered = PublicKey.from_signature_and_message(signed.signature + bytes([signed.recovery_id]), bytes(32), hasher=None)
            assert recovered.format() == created.public_key
        assert not (tmp_path / "var" / "signer" / "master-key.json").exists()  # no local key file with KMS
    finally:
        process.terminate()
        process.wait(10)
