"""Request signing as API.md fixes it (the exchange interface and signed app requests).

``canonical = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign")``
over the raw parameter values; ``sign = hex(HMAC(app_secret, canonical))`` in lower case,
with SHA-256 by default or SM3 (``sign_method=HMAC-SM3``, GB/T 32905, the national
cryptographic hash; OpenSSL's implementation through :mod:`hashlib`). Comparison is in
constant time; the timestamp must lie within the window; a nonce is refused the second
time (the nonce store is the database, so a replay to another worker is refused too).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

DEFAULT_METHOD = "HMAC-SHA256"
METHODS = {"HMAC-SHA256": "sha256", "HMAC-SM3": "sm3"}


class SignatureError(ValueError):
    """The signature, its method or its timestamp is wrong; ``reason`` names which."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # "method" | "signature" | "expired" | "replay" | "timestamp"


def sm3_available() -> bool:
    return "sm3" in hashlib.algorithms_available


def canonical(params: Mapping[str, str]) -> str:
    """The string that is signed: every parameter but ``sign``, sorted by name, raw values."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign")


def sign(secret: str, params: Mapping[str, str], method: str = DEFAULT_METHOD) -> str:
    """Lower-case hex HMAC of :func:`canonical` with ``secret``."""
    digest = METHODS.get(method)
    if digest is None:
        raise SignatureError("method", f"unknown sign_method {method!r}; use one of {sorted(METHODS)}")
    return hmac.new(secret.encode(), canonical(params).encode(), digest).hexdigest()


def check_timestamp(value: str, now: float, window_s: int) -> int:
    """The timestamp as int seconds; :class:`SignatureError` when not a number or out of window."""
    text = value.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 12:
        raise SignatureError("timestamp", "timestamp must be Unix seconds (an integer)")
    ts = int(text)
    if abs(now - ts) > window_s:
        raise SignatureError("expired", f"timestamp is {int(now - ts)} s from the server clock (window ±{window_s} s)")
    return ts


def verify(secret: str, params: Mapping[str, str]) -> None:
    """Raise :class:`SignatureError` unless ``params["sign"]`` is the right signature."""
    method = params.get("sign_method") or DEFAULT_METHOD
    expected = sign(secret, params, method)
    given = params.get("sign") or ""
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise SignatureError("signature", "signature does not match")


__all__ = ["DEFAULT_METHOD", "METHODS", "SignatureError", "canonical", "check_timestamp", "sign",
           "sm3_available", "verify"]
