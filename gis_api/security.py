"""Who is calling, in one place: every route that needs to know asks :func:`principal`.

``Authorization: Bearer <token>`` is either ``TWIN_ADMIN_TOKEN`` (the operator's break-glass
token: role admin) or an access token from ``POST /auth/token``. No header: the anonymous
principal with role ``public``. A wrong or expired token is a 401, never anonymous.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from twin.errors import Forbidden, Unauthorized
from twin.security.accounts import ANONYMOUS, Accounts, Principal


def accounts(request: Request) -> Accounts:
    acc = getattr(request.app.state, "accounts", None)
    if acc is None:
        acc = request.app.state.accounts = Accounts(request.app.state.store, request.app.state.settings)
    return acc


AccountsDep = Annotated[Accounts, Depends(accounts)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def principal(request: Request) -> Principal:
    """The caller's principal (cached on the request)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization") or ""
    if not header:
        found = ANONYMOUS
    else:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        admin = request.app.state.settings.admin_token
        if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
            found = Principal("admin-token", frozenset({"admin"}))
        else:
            found = accounts(request).principal_from_token(token)
    request.state.principal = found
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


def require_role(*roles: str):  # noqa: ANN201 - a FastAPI dependency
    """A dependency refusing callers that have none of ``roles`` (admin always passes)."""

    def check(who: PrincipalDep) -> Principal:
        if who.is_admin or who.roles & set(roles):
            return who
        if who is ANONYMOUS:
            raise Unauthorized("log in first (POST /auth/token)")
        raise Forbidden(f"needs one of the roles {sorted(roles)}", detail={"principal": who.subject})

    return check


AdminDep = Annotated[Principal, Depends(require_role("admin"))]
