"""The data-exchange interface of seed 001 App. A, through HTTP as a city platform calls it:
every status code, signing with HMAC-SHA256 and HMAC-SM3, replay, expiry, tampering, re-targeting,
and a `where` that is parsed, never pasted into SQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sec_consts import ADMIN_TOKEN, APP_ID, APP_SECRET

from twin.security.exchange import ExchangeError, like_match, parse_where
from twin.security.signing import canonical, sign

PUSH = "/eUrbanMIS/api/v1/pushdata"
GET = "/eUrbanMIS/api/v1/getdata"
ROWS = [  # the standard's own example (table A.0.1)
    {"districtCode": "210102", "districtName": "和平区", "area": 59.72, "gridCount": 3797, "dutyGridCount": 119,
     "statisticalTime": "2019-04-19 12:00:00"},
    {"districtCode": "210103", "districtName": "沈河区", "area": 58.97, "gridCount": 3495, "dutyGridCount": 121,
     "statisticalTime": "2019-04-19 12:00:00"},
]


def signed(params: dict, secret: str = APP_SECRET, method: str | None = None) -> dict:
    p = {"appID": APP_ID, "timestamp": str(int(time.time())), "version": "1.0", **params}
    if method:
        p["sign_method"] = method
    p["sign"] = sign(secret, p, method or "HMAC-SHA256")
    return p


def push(client, params):
    return client.post(PUSH, data=params)


# --------------------------------------------------------------------------- signing
def test_sm3_matches_the_standard_test_vectors():
    # GB/T 32905-2016 Appendix A, examples 1 and 2
    assert hashlib.new("sm3", b"abc").hexdigest() == \
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert hashlib.new("sm3", b"abcd" * 16).hexdigest() == \
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_hmac_sm3_is_rfc2104_over_sm3():
    key, msg = b"key", b"appID=a&timestamp=1"
    block = 64
    k = key.ljust(block, b"\0")
    inner = hashlib.new("sm3", bytes(b ^ 0x36 for b in k) + msg).digest()
    outer = hashlib.new("sm3", bytes(b ^ 0x5C for b in k) + inner).hexdigest()
    assert sign("key", {"appID": "a", "timestamp": "1"}, "HMAC-SM3") == outer


def test_canonical_string_is_sorted_raw_and_without_sign():
    assert canonical({"table": "part", "appID": "x", "sign": "zz", "where": "BM=1 AND a='b c'"}) == \
        "appID=x&table=part&where=BM=1 AND a='b c'"


# --------------------------------------------------------------------------- push and get
@pytest.mark.parametrize("method", [None, "HMAC-SM3"])
def test_push_then_get_with_the_standards_example(sec_client, method):
    r = push(sec_client, signed({"group": "basic", "table": "part", "data": json.dumps(ROWS, ensure_ascii=False)},
                                method=method))
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "code": 0, "message": r.json()["message"], "data": {"received": 2}}
    r = sec_client.get(GET, params=signed({"group": "basic", "table": "part", "where": "districtCode=210103"},
                                          method=method))
    assert r.status_code == 200 and r.json()["success"] is True
    assert [row["districtName"] for row in r.json()["data"]] == ["沈河区"]
    r = sec_client.get(GET, params=signed({"group": "basic", "table": "part",
                                           "where": "gridCount > 3500 OR districtName LIKE '沈%'"}))
    assert len(r.json()["data"]) == 2
    r = sec_client.get(GET, params=signed({"group": "basic", "table": "part", "where": "area < 59 AND gridCount=3495"}))
    assert [row["districtCode"] for row in r.json()["data"]] == ["210103"]


@pytest.mark.parametrize("drop,code", [("appID", 10003), ("version", 10005), ("timestamp", 10006), ("data", 10004)])
def test_empty_parameters_get_their_codes(sec_client, drop, code):
    p = signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)})
    p[drop] = ""
    r = push(sec_client, p)
    assert r.status_code == 400 and r.json()["code"] == code and r.json()["success"] is False


def test_every_other_status_code(sec_client):
    base = {"group": "basic", "table": "part"}
    # 10001 data unparsable (signed correctly)
    r = push(sec_client, signed({**base, "data": "[{not json"}))
    assert (r.status_code, r.json()["code"]) == (400, 10001)
    r = push(sec_client, signed({**base, "data": "[1, 2]"}))
    assert r.json()["code"] == 10001
    # 10002 illegal parameter: a table name that is not a name
    r = push(sec_client, signed({"group": "basic", "table": "part; DROP TABLE users", "data": json.dumps(ROWS)}))
    assert (r.status_code, r.json()["code"]) == (400, 10002)
    # 10007 signature invalid: tampered data after signing
    p = signed({**base, "data": json.dumps(ROWS)})
    p["data"] = json.dumps(ROWS[:1])
    r = push(sec_client, p)
    assert (r.status_code, r.json()["code"]) == (401, 10007)
    # 10007 wrong algorithm
    p = signed({**base, "data": json.dumps(ROWS)})
    p["sign_method"] = "HMAC-MD5"
    assert push(sec_client, p).json()["code"] == 10007
    # 10008 expired (and from the future)
    for skew in (-301, 400):
        p = {"appID": APP_ID, "version": "1.0", "timestamp": str(int(time.time()) + skew), **base,
             "data": json.dumps(ROWS)}
        p["sign"] = sign(APP_SECRET, p)
        assert push(sec_client, p).json()["code"] == 10008
    # 10009 unknown app, and an app without the exchange role
    assert push(sec_client, signed({**base, "data": "[]", "appID": "nobody"})).json()["code"] == 10009
    p = {"appID": "viewer-app", "version": "1.0", "timestamp": str(int(time.time())), **base, "data": json.dumps(ROWS)}
    p["sign"] = sign("other-secret", p)
    assert push(sec_client, p).json()["code"] == 10009
    # nothing was written by any of these
    r = sec_client.get(GET, params=signed(base))
    assert r.json()["data"] == []


def test_server_error_is_10010_when_the_database_is_down(tmp_path):
    from fastapi.testclient import TestClient

    from gis_api.app import create_app
    from twin.settings import TwinSettings
    from twin.store import SpatialStore

    url = "postgresql://postgres@127.0.0.1:1/nothing"
    settings = TwinSettings(home=tmp_path, database_url=url, secret_key="k" * 40)
    with TestClient(create_app(settings, store=SpatialStore.from_url(url))) as client:
        r = client.post(PUSH, data=signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)}))
    assert (r.status_code, r.json()["code"], r.json()["success"]) == (503, 10010, False)


def test_replay_with_a_nonce_is_refused(sec_client):
    p = signed({"group": "basic", "table": "part", "data": json.dumps(ROWS), "nonce": "n-1"})
    assert push(sec_client, p).json()["code"] == 0
    again = push(sec_client, p)
    assert (again.status_code, again.json()["code"]) == (401, 10008)
    assert "replay" in again.json()["message"]


def test_a_getdata_signature_cannot_be_retargeted_to_pushdata(sec_client):
    p = signed({"group": "basic", "table": "part", "where": "a=1"})
    p["data"] = json.dumps(ROWS)  # the attacker adds the data a push needs
    r = push(sec_client, p)
    assert r.json()["code"] == 10007


def test_duplicate_parameters_and_oversized_bodies(sec_client):
    p = signed({"group": "basic", "table": "part", "where": "a=1"})
    r = sec_client.get(GET + "?" + "&".join(f"{k}={v}" for k, v in p.items()) + "&appID=other")
    assert r.json()["code"] == 10002
    big = "x" * (sec_client.app.state.settings.exchange_max_body_bytes + 10)
    r = sec_client.post(PUSH, content=f"data={big}", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and r.json()["code"] == 10002


def test_where_injection_is_data_not_sql(sec_client):
    push(sec_client, signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)}))
    for where in ("districtCode='1' OR '1'='1'", "districtCode=1; DROP TABLE exchange_records",
                  "districtCode=1) OR (1=1", "__import__('os')=1", "districtCode=1 UNION SELECT * FROM users"):
        r = sec_client.get(GET, params=signed({"group": "basic", "table": "part", "where": where}))
        assert r.status_code in (200, 400)
        if r.status_code == 200:
            assert r.json()["data"] == [], where
    r = sec_client.get(GET, params=signed({"group": "basic", "table": "part", "where": "districtCode=210102"}))
    assert len(r.json()["data"]) == 1  # the table is still there


def test_exchange_monitoring_counts_calls_and_failures(sec_client):
    push(sec_client, signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)}))
    push(sec_client, signed({"group": "basic", "table": "part", "data": "broken"}))
    r = sec_client.get("/eUrbanMIS/api/v1/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200
    (mine,) = [a for a in r.json()["apps"] if a["app_id"] == APP_ID]
    assert mine["calls"] >= 2 and mine["failures"] >= 1 and mine["last_success"] and mine["last_failure"]
    assert sec_client.get("/eUrbanMIS/api/v1/status").status_code == 401


# --------------------------------------------------------------------------- the where language
def _rows():
    return [{"a": i, "b": f"x{i}", "c": None if i % 2 else "v"} for i in range(10)]


def test_where_semantics():
    rows = _rows()
    sel = lambda w: [r["a"] for r in rows if parse_where(w)(r)]  # noqa: E731
    assert sel("a >= 8") == [8, 9]
    assert sel("a IN (1, 3) OR b = 'x5'") == [1, 3, 5]
    assert sel("NOT (a < 8)") == [8, 9]
    assert sel("c IS NULL AND a < 4") == [1, 3]
    assert sel("b NOT LIKE 'x%'") == []
    assert sel("b LIKE 'x_'") == list(range(10))
    for bad in ("a = ", "(a=1", "a == 1", "1=1", "a LIKE", "NOT NOT", "a=1 b=2", "a IS 5"):
        with pytest.raises(ExchangeError):
            parse_where(bad)
    with pytest.raises(ExchangeError):
        parse_where("(" * 500 + "a=1" + ")" * 500)
    with pytest.raises(ExchangeError):
        parse_where(" OR ".join(["a=1"] * 1000))
    with pytest.raises(ExchangeError):
        parse_where("NOT " * 5000 + "a=1")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_where_text_parses_or_is_refused_with_10002(text):
    try:
        pred = parse_where(text)
    except ExchangeError as exc:
        assert exc.code == 10002
        return
    for row in _rows():
        assert pred(row) in (True, False)


_like_alpha = st.sampled_from(list("ab%_"))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_like_alpha, max_size=12), st.text(alphabet="ab", max_size=14))
def test_like_matches_what_a_regex_says(pattern, text):
    import re

    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    assert like_match(pattern, text) == bool(re.fullmatch(regex, text, re.S))


def test_like_does_not_backtrack():
    t0 = time.perf_counter()
    assert not like_match("%a%a%a%a%a%a%a%a%a%a%b", "a" * 1900)
    assert time.perf_counter() - t0 < 5  # a backtracking matcher takes hours here


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["group", "table", "where", "appID", "timestamp", "version", "sign", "nonce",
                                        "sign_method", "x"]), st.text(max_size=40), max_size=9))
def test_getdata_never_fails_on_arbitrary_parameters(sec_client, params):
    r = sec_client.get(GET, params=params)
    assert r.status_code in (200, 400, 401), r.text
    assert set(r.json()) == {"success", "code", "message", "data"}


def test_constant_time_comparison_is_used():
    # the verifier compares with hmac.compare_digest; check it is what signing.verify calls
    import inspect

    from twin.security import signing

    assert "compare_digest" in inspect.getsource(signing.verify)
    assert hmac.compare_digest is not None


def test_a_disabled_or_rotated_app_is_refused_at_once(sec_client):
    """App secrets are cached 2 s for speed; disabling or rotating an app through the server's own
    accounts must still take effect on the next request (CWE-613, insufficient session expiration)."""
    ok = signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)})
    assert push(sec_client, ok).json()["code"] == 0  # the app's secret is now cached
    sec_client.accounts.set_app_enabled(APP_ID, False)
    assert push(sec_client, signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)})).json()[
        "code"] == 10009
    sec_client.accounts.set_app_enabled(APP_ID, True)
    assert push(sec_client, signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)})).json()[
        "code"] == 0
    new = sec_client.accounts.rotate_app_secret(APP_ID)
    assert push(sec_client, signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)})).json()[
        "code"] == 10007
    assert push(sec_client, signed({"group": "basic", "table": "part", "data": json.dumps(ROWS)},
                                   secret=new)).json()["code"] == 0
