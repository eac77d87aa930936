"""Secrets: device secrets, admin tokens and enrollment codes. Only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

DEVICE_PREFIX = "kdev_"
ADMIN_PREFIX = "kadm_"
secret_bytes = 32
enrollment_code_chars = 16
_code_alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_device_secret() -> str:
    return DEVICE_PREFIX + secrets.token_urlsafe(secret_bytes)


def new_admin_token() -> str:
    return ADMIN_PREFIX + secrets.token_urlsafe(secret_bytes)


def new_enrollment_code() -> str:
    """Sixteen characters in groups of four, easy to read aloud over the phone."""
    raw = "".join(secrets.choice(_code_alphabet) for _ in range(enrollment_code_chars))
    return "-".join(raw[i : i + 4] for i in range(0, enrollment_code_chars, 4))


def normalize_code(code: str) -> str:
    return code.strip().upper()


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
