"""The two hashes every cache key, fingerprint and model identity is made of."""

from __future__ import annotations

import hashlib
import json

__all__ = ['content_key', 'file_sha256']


def content_key(payload) -> str:
    """A short hash of a JSON-able payload (other values are hashed by ``str``), the same for
    the same content whatever the order of its keys."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's content, read in blocks (model weights are gigabytes)."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()
