"""Plain exceptions raised by the core.

The HTTP layer maps each class to a status code in one table
(``gis_api.errors``); the CLI prints ``code: message``. Nothing here knows HTTP.
"""

from __future__ import annotations

from typing import Any


class TwinError(Exception):
    """Base class: a machine-readable ``code``, a human ``message`` and optional ``detail``."""

    code = "error"

    def __init__(self, message: str, detail: Any = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code:
            self.code = code


class InvalidParameter(TwinError):
    """A query parameter or request body field is malformed or out of range."""

    code = "invalid_parameter"


class NotFound(TwinError):
    """Something named in the request does not exist (base of the specific *NotFound errors)."""

    code = "not_found"


class LayerNotFound(NotFound):
    code = "layer_not_found"


class FeatureNotFound(NotFound):
    code = "feature_not_found"


class LimitExceeded(TwinError):
    """A request asks for more than the server is willing to do at once (limit, bbox, layers)."""

    code = "limit_exceeded"


class InvalidGeometry(TwinError):
    code = "invalid_geometry"


class LoadFailed(TwinError):
    """An import was refused; nothing was written. ``detail`` lists the rejected rows."""

    code = "load_failed"


class UnsupportedFormat(TwinError):
    code = "unsupported_format"


class StoreUnavailable(TwinError):
    """The database cannot be reached or timed out."""

    code = "store_unavailable"


class Unauthorized(TwinError):
    """The caller is not identified (no or wrong credentials)."""

    code = "unauthorized"


class Forbidden(TwinError):
    """The caller is known but its roles do not allow this (403)."""

    code = "forbidden"


class AccountLocked(Unauthorized):
    """Too many failed logins: the account is locked for a while (423)."""

    code = "account_locked"


class Conflict(TwinError):
    """The request clashes with the current state of the data (e.g. an illegal status step)."""

    code = "conflict"


class Unprocessable(TwinError):
    """The request is well formed but cannot be carried out as asked (e.g. a required note is missing)."""

    code = "unprocessable"
