"""The signing sidecar: a process that holds secp256k1 keys and signs 32-byte digests.

It imports nothing from Django. Web processes reach it only through apps/signing/client.py.
"""
