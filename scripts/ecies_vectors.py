"""Write docs/ecies-vectors.json: ECIES v1 test vectors from fixed keys, so other implementations can check theirs.

    python scripts/ecies_vectors.py          # rewrite the file
    python scripts/ecies_vectors.py --check  # exit 1 if the file differs from what this script makes

Every input is derived from a label by SHA-256, so the output is the same on every run;
homepocket_client/tests/test_ecies.py checks the committed file against the code both ways.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coincurve import PrivateKey  # noqa: E402

from homepocket_client.ecies import NONCE_BYTES, ecies_encrypt  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "ecies-vectors.json"
PLAINTEXTS = [b"", b"a 1-byte share? no: a short one", bytes(range(256)), hashlib.sha512(b"share").digest() * 64]


def _derive(label: str) -> bytes:
    return hashlib.sha256(f"homepocket/ecies/v1 test vector: {label}".encode()).digest()


def vectors() -> list[dict]:
    out = []
    for i, plaintext in enumerate(PLAINTEXTS):
        recipient = PrivateKey(_derive(f"recipient {i}"))
        ephemeral = PrivateKey(_derive(f"ephemeral {i}"))
        nonce = _derive(f"nonce {i}")[:NONCE_BYTES]
        aad = uuid.UUID(bytes=_derive(f"delivery id {i}")[:16], version=4).bytes
        message = ecies_encrypt(recipient.public_key.format(), plaintext, aad=aad, ephemeral_key=ephemeral, nonce=nonce)
        out.append({
            "recipient_private_key": recipient.secret.hex(),
            "recipient_public_key": recipient.public_key.format().hex(),
            "ephemeral_private_key": ephemeral.secret.hex(),
            "nonce": nonce.hex(),
            "aad": aad.hex(),
            "plaintext": plaintext.hex(),
            "message": message.hex(),
        })  # fmt: skip
    return out


def render() -> str:
    return json.dumps({"scheme": "homepocket/ecies/v1", "vectors": vectors()}, indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("docs/ecies-vectors.json is up to date" if same else "docs/ecies-vectors.json differs from the code")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {len(vectors())} vectors to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
