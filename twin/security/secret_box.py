"""The server key: signs bearer tokens, and encrypts app secrets at rest (Fernet: AES-128-CBC
+ HMAC-SHA256 from the ``cryptography`` package).

An HMAC can be checked only with the secret in hand, so an app's secret cannot be stored as a
one-way hash the way a password is; it is stored encrypted under this key instead, and a
database dump alone does not reveal it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from twin.settings import TwinSettings


def server_key(settings: TwinSettings) -> bytes:
    """``TWIN_SECRET_KEY``, or a random key kept in ``TWIN_HOME/secret.key`` (created once, 0600)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = Path(settings.home) / "secret.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
        finally:
            os.close(fd)
        return key
    except FileExistsError:  # pragma: no cover - another process created it meanwhile
        return path.read_bytes().strip()


class SecretBox:
    """Encrypts and decrypts short secrets under a key derived from the server key."""

    def __init__(self, key: bytes):
        derived = hashlib.sha256(b"twin-secret-box\x00" + key).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this server key (was TWIN_SECRET_KEY changed?)") from exc


__all__ = ["SecretBox", "server_key"]
