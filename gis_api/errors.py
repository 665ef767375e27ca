"""One table from core exceptions to HTTP status codes, and JSON error bodies.

Every error leaves as ``{"code": ..., "message": ..., "detail": ...}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gis_api.responses import JSONResponse
from twin import errors as E

log = logging.getLogger("twin.api")

STATUS: dict[type[E.TwinError], int] = {
    E.InvalidParameter: 400,
    E.NotFound: 404,
    E.LimitExceeded: 400,
    E.InvalidGeometry: 422,
    E.LoadFailed: 422,
    E.UnsupportedFormat: 415,
    E.StoreUnavailable: 503,
    E.Unauthorized: 401,
    E.Forbidden: 403,
    E.AccountLocked: 423,
    E.Conflict: 409,
    E.Unprocessable: 422,
}


class ErrorBody(BaseModel):
    """The body of every error answer."""

    code: str = Field(description="Machine-readable reason, e.g. invalid_parameter, token_expired, rate_limited")
    message: str = Field(description="What went wrong, for people")
    detail: Any = Field(default=None, description="More about it (the parameter, the layer, the validation errors)")


#: Error answers every operation may give, for the OpenAPI document (``FastAPI(responses=…)``): a 4xx
#: of the shape above (400 bad parameter, 401/403 roles, 404, 413 body cap, 429 rate limit, …) and a
#: 503 (database down, circuit open, statement timeout). Declaring ``4XX`` also keeps FastAPI from
#: documenting its own 422 validation body, which this app never sends (validation errors are 400s).
OPENAPI_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Client error: `{code, message, detail}`"},
    503: {"model": ErrorBody, "description": "Database or broker unavailable, circuit open, or query timeout "
                                             "(`Retry-After` when the circuit is open)"},
}


def error_response(status: int, code: str, message: str, detail: object = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "detail": detail}, status_code=status)


def status_for(exc: E.TwinError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(E.TwinError)
    async def _twin_error(_: Request, exc: E.TwinError) -> JSONResponse:
        return error_response(status_for(exc), exc.code, exc.message, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        first = errs[0] if errs else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"][1:]) or "request"
        return error_response(400, "invalid_parameter", f"{where}: {first['msg']}", errs)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(IntegrityError)
    async def _conflict(_: Request, exc: IntegrityError) -> JSONResponse:
        return error_response(409, "conflict", "the write conflicts with data already stored",
                              str(exc.orig).splitlines()[0])

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        """Statement timeout → 503 query_timeout; lost database → 503 (and the circuit breaker
        counts it, gis_api/guard.py); anything else → 500 (logged)."""
        if "statement timeout" in str(exc.orig):
            log.warning("query cancelled by the statement timeout: %s", exc.statement)
            return error_response(503, "query_timeout", "query cancelled: it took too long")
        if isinstance(exc, OperationalError):
            breaker = getattr(request.app.state, "breaker", None)
            if breaker is not None:
                breaker.failure()
            log.warning("database unavailable: %s", exc.orig)
            return error_response(503, "store_unavailable", "database unavailable")
        log.exception("database error")
        return error_response(500, "internal_error", "database error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
