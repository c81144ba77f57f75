"""Encrypting third-party tokens at rest with a key derived from SECRET_KEY (never stored in plain text)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


def _fernet(secret_key: str, purpose: str) -> Fernet:
    """One derived key per purpose, so a token encrypted for HubSpot cannot be replayed as another secret."""
    digest = hashlib.sha256(f"leadpulse:{purpose}:{secret_key}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(secret_key: str, purpose: str, plaintext: str) -> str:
    return _fernet(secret_key, purpose).encrypt(plaintext.encode()).decode()


def decrypt(secret_key: str, purpose: str, ciphertext: str) -> str | None:
    """None when SECRET_KEY changed since: the token must be connected again."""
    try:
        return _fernet(secret_key, purpose).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None
