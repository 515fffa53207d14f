"""API keys: ``mld_<key id>_<secret>``, shown once, stored as the secret's SHA-256.

Secrets are 32 random bytes, so a plain SHA-256 (no slow hash) cannot be
brute-forced; the key id makes lookup a primary-key read, and the digest is
compared in constant time.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

PREFIX = "mld_"


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret_sha256: str
    token: str  # what the user sends as "Authorization: Bearer <token>"; never stored


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, digest(secret), f"{PREFIX}{key_id}_{secret}")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret digest) of a well-formed token, else None."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or len(key_id) != 12 or not secret:
        return None
    return key_id, digest(secret)


def parse_key_id(text: str) -> str | None:
    """The key id in ``text``: a bare id (12 hex digits) or a whole ``mld_`` token."""
    text = text.strip()
    if text.startswith(PREFIX):
        text = text[len(PREFIX):].partition("_")[0]
    if len(text) == 12 and all(c in "0123456789abcdef" for c in text):
        return text
    return None
