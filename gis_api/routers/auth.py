"""Log in and tokens: ``POST /auth/token``, ``POST /auth/revoke``, ``GET /auth/me``; the audit
log for admins: ``GET /admin/audit`` (JSON or CSV)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from gis_api.deps import StoreDep
from gis_api.responses import JSONResponse
from gis_api.security import AccountsDep, AdminDep, PrincipalDep, client_address
from twin.errors import InvalidParameter, Unauthorized
from twin.security import audit

router = APIRouter(tags=["Security"])


class TokenRequest(BaseModel):
    """One of three grants: a user's password, a refresh token, or a signed app request
    (API.md: appID, timestamp, nonce, sign[, sign_method])."""

    grant_type: Literal["password", "refresh_token", "app_signature"]
    username: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, max_length=1024)
    refresh_token: str | None = Field(default=None, max_length=4096)
    appID: str | None = Field(default=None, max_length=64)
    timestamp: str | None = Field(default=None, max_length=16)
    nonce: str | None = Field(default=None, max_length=128)
    sign: str | None = Field(default=None, max_length=256)
    sign_method: str | None = Field(default=None, max_length=32)


class RevokeRequest(BaseModel):
    refresh_token: str = Field(max_length=4096)


async def _form_or_json(request: Request) -> dict:
    ctype = request.headers.get("content-type", "")
    if "json" in ctype:
        try:
            body = await request.json()
        except ValueError:
            raise InvalidParameter("body is not JSON") from None
        if not isinstance(body, dict):
            raise InvalidParameter("body must be a JSON object")
        return body
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/auth/token", summary="Exchange a password, a refresh token or a signed app request for a bearer token",
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": TokenRequest.model_json_schema()},
                 "application/x-www-form-urlencoded": {"schema": TokenRequest.model_json_schema()}}}})
async def token(request: Request, acc: AccountsDep, store: StoreDep) -> JSONResponse:
    try:
        req = TokenRequest.model_validate(await _form_or_json(request))
    except ValueError as exc:
        raise InvalidParameter("bad token request", detail=str(exc)[:500]) from None
    client = client_address(request)
    who = req.username or req.appID or "?"
    try:
        if req.grant_type == "password":
            if not req.username or req.password is None:
                raise InvalidParameter("grant_type=password needs username and password")
            answer = await run_in_threadpool(
                lambda: acc.issue(acc.authenticate(req.username or "", req.password or "")))
        elif req.grant_type == "refresh_token":
            if not req.refresh_token:
                raise InvalidParameter("grant_type=refresh_token needs refresh_token")
            answer = await run_in_threadpool(acc.refresh, req.refresh_token)
        else:
            params = {k: v for k, v in req.model_dump().items() if v is not None and k not in
                      ("username", "password", "refresh_token")}
            answer = await run_in_threadpool(lambda: acc.issue(acc.authenticate_app(params)))
    except Unauthorized as exc:
        await run_in_threadpool(audit.record, store, f"login:{who}"[:96], "auth.token", "denied",
                                target=req.grant_type, client=client, detail={"reason": exc.code})
        raise
    await run_in_threadpool(audit.record, store, f"login:{who}"[:96], "auth.token", "ok", target=req.grant_type,
                            client=client)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


@router.post("/auth/revoke", summary="Revoke a refresh token (for a user: every token issued so far)")
async def revoke(body: RevokeRequest, request: Request, acc: AccountsDep, store: StoreDep) -> JSONResponse:
    await run_in_threadpool(acc.revoke, body.refresh_token)
    await run_in_threadpool(audit.record, store, "token-holder", "auth.revoke", "ok",
                            client=client_address(request))
    return JSONResponse({"revoked": True})


@router.get("/auth/me", summary="Who the bearer token names, with its roles")
async def me(who: PrincipalDep) -> JSONResponse:
    return JSONResponse({"subject": who.subject, "roles": sorted(who.roles)})


@router.get("/admin/audit", summary="The audit log (admins): filter, page, or download as CSV",
            responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
async def audit_log(
    request: Request, who: AdminDep, store: StoreDep,
    principal: Annotated[str | None, Query(max_length=96)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    f: Annotated[Literal["json", "csv"], Query()] = "json",
):
    total, rows = await run_in_threadpool(lambda: audit.query(
        store, principal=principal, action=action, outcome=outcome, since=since, until=until, limit=limit,
        offset=offset))
    await run_in_threadpool(audit.record, store, who.subject, "admin.audit_read", "ok",
                            client=client_address(request))
    if f == "csv":
        return StreamingResponse(audit.export_csv(rows), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
    return JSONResponse({"numberMatched": total, "records": rows})


def register(app: FastAPI) -> None:
    app.include_router(router)
