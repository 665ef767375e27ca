"""The standard data-exchange interface (seed 001 App. A): ``POST /eUrbanMIS/api/v1/pushdata``,
``GET /eUrbanMIS/api/v1/getdata``, and ``GET /eUrbanMIS/api/v1/status`` for admins.

The answers keep the standard's own envelope ``{success, code, message, data}`` (not twin's
error JSON), with an HTTP status that agrees: 200, 400, 401, 413 or 503.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import DBAPIError

from gis_api.responses import JSONResponse
from gis_api.security import AccountsDep, AdminDep, client_address
from twin.security import audit
from twin.security.exchange import HTTP_STATUS, Exchange, ExchangeError, envelope

router = APIRouter(prefix="/eUrbanMIS/api/v1", tags=["Data exchange"])
PARAMS_DOC = ("Parameters as in seed 001 table A.0.1/A.0.2; sign = lower-case hex HMAC-SHA256 (or HMAC-SM3 with "
              "sign_method=HMAC-SM3) over the sorted `k=v` pairs joined by `&`, all but `sign`; timestamp within "
              "±300 s; an optional `nonce` is refused the second time.")
ENVELOPE = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["success", "code", "message", "data"],
    "properties": {"success": {"type": "boolean"}, "code": {"type": "integer"}, "message": {"type": "string"},
                   "data": {}}}}}}
RESPONSES = {status: {"description": f"envelope, code {codes}", **ENVELOPE} for status, codes in (
    (200, "0"), (400, "10001-10006"), (401, "10007-10009"), (413, "10002"), (503, "10010"))}


def _exchange(request: Request, acc) -> Exchange:  # noqa: ANN001 - Accounts
    ex = getattr(request.app.state, "exchange", None)
    if ex is None:
        ex = request.app.state.exchange = Exchange(request.app.state.store, acc,
                                                   request.app.state.settings.exchange_max_rows)
    return ex


def _params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise ExchangeError(10002, f"parameter {k!r} given twice")
        out[k] = v
    return out


async def _answer(request: Request, acc, kind: str, read_params) -> JSONResponse:  # noqa: ANN001
    store = request.app.state.store
    ex = _exchange(request, acc)
    app_id: str | None = None
    claimed = "?"
    params: dict[str, str] = {}
    try:
        params = await read_params()
        claimed = params.get("appID") or "?"
        app_id = await run_in_threadpool(ex.authenticate, params, needs="data" if kind == "pushdata" else "where")
        if kind == "pushdata":
            n = await run_in_threadpool(ex.push, app_id, params["group"], params["table"], params["data"])
            data: object = {"received": n}
        else:
            data = await run_in_threadpool(ex.get, params["group"], params["table"], params.get("where"))
        code, detail, status = 0, "", 200
    except ExchangeError as exc:
        code, detail, data = exc.code, exc.detail, None
        status = 413 if "larger than" in detail else HTTP_STATUS[code]
    except DBAPIError:
        code, detail, data, status = 10010, "the database is unavailable", None, 503
    principal = f"app:{app_id or claimed}"[:96] if app_id or code not in (10003, 10009) else "unknown-app"
    try:
        await run_in_threadpool(audit.record, store, principal, f"exchange.{kind}", "ok" if code == 0 else "fail",
                                target=f"{params.get('group', '')}/{params.get('table', '')}"[:256],
                                client=client_address(request), detail=None if code == 0 else {"code": code})
    except DBAPIError:
        pass
    return JSONResponse(envelope(code, data, detail), status_code=status)


@router.post("/pushdata", summary="Push rows of a table (seed 001 A.0.1)", description=PARAMS_DOC,
             responses=RESPONSES, openapi_extra={"requestBody": {"required": True, "content": {
                 "application/x-www-form-urlencoded": {"schema": {
                     "type": "object", "required": ["group", "table", "data", "appID", "timestamp", "sign", "version"],
                     "properties": {k: {"type": "string"} for k in (
                         "group", "table", "data", "appID", "timestamp", "sign", "version", "nonce",
                         "sign_method")}}}}}})
async def pushdata(request: Request, acc: AccountsDep) -> JSONResponse:
    cap = request.app.state.settings.exchange_max_body_bytes

    async def read() -> dict[str, str]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise ExchangeError(10002, f"request body larger than {cap} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise ExchangeError(10002, f"request body larger than {cap} bytes")
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise ExchangeError(10001, "request body is not UTF-8") from None
        try:
            return _params(parse_qsl(text, keep_blank_values=True, max_num_fields=50))
        except ValueError:
            raise ExchangeError(10002, "more than 50 form fields") from None

    return await _answer(request, acc, "pushdata", read)


GETDATA_PARAMS = [{"name": k, "in": "query", "required": k not in ("where", "nonce", "sign_method"),
                   "schema": {"type": "string"}} for k in (
    "group", "table", "where", "appID", "timestamp", "sign", "version", "nonce", "sign_method")]


@router.get("/getdata", summary="Query rows of a table (seed 001 A.0.2)", description=PARAMS_DOC, responses=RESPONSES,
            openapi_extra={"parameters": GETDATA_PARAMS})
async def getdata(request: Request, acc: AccountsDep) -> JSONResponse:
    async def read() -> dict[str, str]:
        return _params(list(request.query_params.multi_items()))

    return await _answer(request, acc, "getdata", read)


@router.get("/status", summary="Exchange monitoring (admins): calls, failures, last success per app")
async def status(request: Request, acc: AccountsDep, who: AdminDep) -> JSONResponse:
    return JSONResponse({"apps": await run_in_threadpool(_exchange(request, acc).status)})


def register(app: FastAPI) -> None:
    app.include_router(router)
