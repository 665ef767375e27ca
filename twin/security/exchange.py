"""The standard data-exchange interface, exactly as seed 001 App. A (CJJ/T 312) fixes it.

``pushdata`` (POST, form: group, table, data, appID, timestamp, sign, version) stores the
rows of ``data`` (a JSON array of objects) under group/table; ``getdata`` (GET: group,
table, where, appID, timestamp, sign, version) returns the rows matching ``where``. Every
answer is the envelope ``{"success", "code", "message", "data"}`` with the standard's codes
(table A.0.4). The request is signed as API.md says (signing.py), checked against the
timestamp window, and a ``nonce`` is refused the second time.

``where`` is parsed by the small grammar below and evaluated against the stored rows in
Python, so it never reaches SQL as text (GeoServer's CVE-2023-25157 was a filter pasted
into SQL). Grammar: ``expr := term (OR term)*``, ``term := factor (AND factor)*``,
``factor := NOT factor | '(' expr ')' | name op value | name [NOT] IN (v, …) | name IS
[NOT] NULL``; ``op`` is one of ``= != <> > >= < <= LIKE``; values are numbers, quoted
strings or bare words (the standard's own example is ``BM=35010220201022000001``). Depth,
length and the number of conditions are capped; LIKE is matched without backtracking.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from twin.schema import AuditRecord, ExchangeRecord
from twin.security.accounts import Accounts
from twin.security.signing import SignatureError, check_timestamp, verify
from twin.store import SpatialStore

#: table A.0.4
CODES: dict[int, str] = {
    0: "成功 success",
    10001: "data参数解析异常 data cannot be parsed",
    10002: "参数不合法 illegal parameter",
    10003: "appID参数为空 appID is empty",
    10004: "data参数为空 data is empty",
    10005: "version参数为空 version is empty",
    10006: "timestamp参数为空 timestamp is empty",
    10007: "签名验证失败 signature invalid",
    10008: "接口时效失效 request expired",
    10009: "未分配的appID unknown appID",
    10010: "服务端错误 server error",
}
HTTP_STATUS = {0: 200, 10001: 400, 10002: 400, 10003: 400, 10004: 400, 10005: 400, 10006: 400,
               10007: 401, 10008: 401, 10009: 401, 10010: 503}
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_WHERE = 2000
MAX_DEPTH = 20
MAX_CONDITIONS = 100


class ExchangeError(Exception):
    def __init__(self, code: int, detail: str = ""):
        super().__init__(detail or CODES[code])
        self.code = code
        self.detail = detail


def envelope(code: int, data: Any = None, detail: str = "") -> dict:
    message = CODES[code] + (f": {detail}" if detail else "")
    return {"success": code == 0, "code": code, "message": message, "data": data}


# ------------------------------------------------------------------ the `where` language
Row = Mapping[str, Any]
Pred = Callable[[Row], bool]
_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<op>>=|<=|!=|<>|=|>|<|\(|\)|,)
  | (?P<word>[^\s()'",=<>!]+)
)""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "IN", "IS", "NULL"}


@dataclass
class _Tok:
    kind: str  # str | op | word | kw
    text: str


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExchangeError(10002, f"where: cannot read {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")
            out.append(_Tok("str", raw[1:-1].replace(raw[0] * 2, raw[0])))
        elif m.group("op") is not None:
            out.append(_Tok("op", m.group("op")))
        else:
            w = m.group("word")
            out.append(_Tok("kw", w.upper()) if w.upper() in _KEYWORDS else _Tok("word", w))
    return out


def like_match(pattern: str, text: str) -> bool:
    """SQL LIKE (``%`` any run, ``_`` one character) without regex backtracking."""
    parts = pattern.split("%")

    def seg_at(seg: str, s: str, i: int) -> bool:
        return len(s) - i >= len(seg) and all(p == "_" or p == s[i + k] for k, p in enumerate(seg))

    def find(seg: str, s: str, start: int) -> int:
        for i in range(start, len(s) - len(seg) + 1):
            if seg_at(seg, s, i):
                return i
        return -1

    if len(parts) == 1:
        return len(text) == len(pattern) and seg_at(pattern, text, 0)
    first, *middle, last = parts
    if not seg_at(first, text, 0):
        return False
    pos = len(first)
    for seg in middle:
        if not seg:
            continue
        i = find(seg, text, pos)
        if i < 0:
            return False
        pos = i + len(seg)
    return len(text) - pos >= len(last) and seg_at(last, text, len(text) - len(last))


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str) and re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", v.strip()) and len(v) < 40:
        return float(v)
    return None


def _compare(a: Any, op: str, b: str) -> bool:
    if a is None:
        return False
    na, nb = _num(a), _num(b)
    # numbers compare as numbers when both sides read as one and neither is a long code
    if na is not None and nb is not None and not (isinstance(a, str) and len(a) > 15):
        x: Any = na
        y: Any = nb
    else:
        x, y = str(a), b
    return {"=": x == y, "!=": x != y, "<>": x != y, ">": x > y, ">=": x >= y, "<": x < y, "<=": x <= y}[op]


class _Parser:
    def __init__(self, tokens: list[_Tok]):
        self.t = tokens
        self.i = 0
        self.conditions = 0

    def peek(self) -> _Tok | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, kind: str | None = None, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (kind and tok.kind != kind) or (text and tok.text != text):
            want = text or kind or "more"
            got = "the end" if tok is None else repr(tok.text)
            raise ExchangeError(10002, f"where: expected {want}, found {got}")
        self.i += 1
        return tok

    def expr(self, depth: int) -> Pred:
        if depth > MAX_DEPTH:
            raise ExchangeError(10002, f"where: nested deeper than {MAX_DEPTH}")
        terms = [self.term(depth)]
        while (tok := self.peek()) is not None and tok.kind == "kw" and tok.text == "OR":
            self.i += 1
            terms.append(self.term(depth))
        if len(terms) == 1:
            return terms[0]

        def any_of(row: Row) -> bool:
            return any(p(row) for p in terms)

        return any_of

    def term(self, depth: int) -> Pred:
        factors = [self.factor(depth)]
        while (tok := self.peek()) is not None and tok.kind == "kw" and tok.text == "AND":
            self.i += 1
            factors.append(self.factor(depth))
        if len(factors) == 1:
            return factors[0]

        def all_of(row: Row) -> bool:
            return all(p(row) for p in factors)

        return all_of

    def factor(self, depth: int) -> Pred:
        tok = self.peek()
        if tok is not None and tok.kind == "kw" and tok.text == "NOT":
            self.i += 1
            inner = self.factor(depth + 1)
            return lambda row: not inner(row)
        if tok is not None and tok.kind == "op" and tok.text == "(":
            self.i += 1
            inner = self.expr(depth + 1)
            self.take("op", ")")
            return inner
        return self.condition()

    def value(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in ("str", "word"):
            raise ExchangeError(10002, "where: expected a value")
        self.i += 1
        return tok.text

    def condition(self) -> Pred:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise ExchangeError(10002, f"where: more than {MAX_CONDITIONS} conditions")
        name = self.take("word").text
        if not re.fullmatch(r"[^\W\d]\w{0,63}", name):
            raise ExchangeError(10002, f"where: {name[:40]!r} is not a field name")
        tok = self.peek()
        if tok is not None and tok.kind == "kw" and tok.text == "IS":
            self.i += 1
            negate = self.peek() is not None and self.peek().text == "NOT"  # type: ignore[union-attr]
            if negate:
                self.i += 1
            self.take("kw", "NULL")
            return (lambda row: row.get(name) is not None) if negate else (lambda row: row.get(name) is None)
        negate = False
        if tok is not None and tok.kind == "kw" and tok.text == "NOT":
            negate = True
            self.i += 1
            tok = self.peek()
        if tok is not None and tok.kind == "kw" and tok.text == "IN":
            self.i += 1
            self.take("op", "(")
            values = [self.value()]
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.i += 1
                values.append(self.value())
            self.take("op", ")")
            return lambda row: negate != any(_compare(row.get(name), "=", v) for v in values)
        if tok is not None and tok.kind == "kw" and tok.text == "LIKE":
            self.i += 1
            pattern = self.value()
            return lambda row: row.get(name) is not None and negate != like_match(pattern, str(row.get(name)))
        if negate:
            raise ExchangeError(10002, "where: NOT must be followed by IN or LIKE here")
        op = self.take("op").text
        if op not in ("=", "!=", "<>", ">", ">=", "<", "<="):
            raise ExchangeError(10002, f"where: {op!r} is not a comparison")
        value = self.value()
        return lambda row: _compare(row.get(name), op, value)


def parse_where(text: str | None) -> Pred:
    """A predicate over a row (dict); :class:`ExchangeError` 10002 for anything else."""
    if text is None or not text.strip():
        return lambda row: True
    if len(text) > MAX_WHERE:
        raise ExchangeError(10002, f"where is longer than {MAX_WHERE} characters")
    parser = _Parser(_tokens(text))
    pred = parser.expr(0)
    if parser.peek() is not None:
        raise ExchangeError(10002, f"where: unexpected {parser.peek().text!r}")  # type: ignore[union-attr]
    return pred


# ------------------------------------------------------------------ the interface
class Exchange:
    """pushdata / getdata over one store, authenticated by :class:`Accounts`."""

    def __init__(self, store: SpatialStore, accounts: Accounts, max_rows: int):
        self.store = store
        self.accounts = accounts
        self.max_rows = max_rows

    def authenticate(self, params: Mapping[str, str], *, needs: str) -> str:
        """Check the parameters in the standard's order; returns the app id."""
        p = {k: v for k, v in params.items()}
        if not p.get("appID"):
            raise ExchangeError(10003)
        if not p.get("version"):
            raise ExchangeError(10005)
        if not p.get("timestamp"):
            raise ExchangeError(10006)
        if needs == "data" and not (p.get("data") or "").strip():
            raise ExchangeError(10004)
        for key in ("group", "table"):
            if not _NAME.match(p.get(key) or ""):
                raise ExchangeError(10002, f"{key} must be 1-64 letters, digits or _")
        app_id = p["appID"]
        found = self.accounts.app_secret(app_id) if re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", app_id) else None
        if found is None:
            raise ExchangeError(10009)
        secret, roles = found
        if "exchange" not in roles and "admin" not in roles:
            raise ExchangeError(10009, "this app may not use the exchange interface")
        try:
            check_timestamp(p["timestamp"], time.time(), self.accounts.settings.signature_window_s)
        except SignatureError as exc:
            raise ExchangeError(10008 if exc.reason == "expired" else 10002, str(exc)) from None
        try:
            verify(secret, p)
        except SignatureError as exc:
            raise ExchangeError(10007, str(exc)) from None
        nonce = p.get("nonce")
        if nonce and not self.accounts.use_nonce(app_id, nonce):
            raise ExchangeError(10008, "nonce was used already (replay)")
        return app_id

    def push(self, app_id: str, group: str, table: str, data: str) -> int:
        try:
            rows = json.loads(data)
        except (ValueError, RecursionError):
            raise ExchangeError(10001, "data is not JSON") from None
        if isinstance(rows, dict):
            rows = [rows]
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise ExchangeError(10001, "data must be a JSON array of objects")
        if len(rows) > self.max_rows:
            raise ExchangeError(10002, f"at most {self.max_rows} rows per push")
        now = dt.datetime.now(dt.UTC)
        with self.store.engine.begin() as conn:
            conn.execute(insert(cast(Table, ExchangeRecord.__table__)), [
                {"app_id": app_id, "group_name": group, "table_name": table, "data": r, "received_at": now}
                for r in rows])
        return len(rows)

    def get(self, group: str, table: str, where: str | None) -> list[dict]:
        pred = parse_where(where)
        t = ExchangeRecord.__table__
        out: list[dict] = []
        with self.store.engine.connect() as conn:
            result = conn.execution_options(yield_per=2000).execute(
                select(t.c.data).where(t.c.group_name == group, t.c.table_name == table).order_by(t.c.id))
            for (row,) in result:
                if pred(row):
                    out.append(row)
                    if len(out) >= self.max_rows:
                        break
        return out

    def status(self) -> list[dict]:
        """Per app: calls, failures, last success and last failure (from the audit log)."""
        a = AuditRecord.__table__
        is_ok = a.c.outcome == "ok"
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(a.c.principal, func.count(), func.sum(func.cast(~is_ok, _int())),
                       func.max(a.c.at).filter(is_ok), func.max(a.c.at).filter(~is_ok))
                .where(a.c.action.in_(("exchange.pushdata", "exchange.getdata")))
                .group_by(a.c.principal).order_by(a.c.principal)).all()
        out = []
        for principal, calls, failures, last_ok, last_fail in rows:
            out.append({"app_id": principal.removeprefix("app:"), "calls": int(calls), "failures": int(failures or 0),
                        "last_success": _iso(last_ok), "last_failure": _iso(last_fail)})
        return out


def _int():  # noqa: ANN202
    from sqlalchemy import Integer

    return Integer()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


__all__ = ["CODES", "HTTP_STATUS", "Exchange", "ExchangeError", "envelope", "like_match", "parse_where"]
