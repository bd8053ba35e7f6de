"""Backup share delivery: recovery-key shares kept wrapped, handed to their device by ECIES (docs/share-delivery.md)."""
