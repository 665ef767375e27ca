"""Users, passwords, lockout, bearer/refresh tokens, signed app tokens and the audit log,
through HTTP on both backends."""

from __future__ import annotations

import time

import pytest
from sec_consts import ADMIN_TOKEN, APP_ID, APP_SECRET
from sqlalchemy import text

from twin.security.signing import sign

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def login(client, user="alice", password="Correct-Horse-1"):
    return client.post("/auth/token", data={"grant_type": "password", "username": user, "password": password})


def test_login_me_refresh_and_revoke(sec_client):
    r = login(sec_client)
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "Bearer" and tok["roles"] == ["planner"] and r.headers["cache-control"] == "no-store"
    me = sec_client.get("/auth/me", headers={"Authorization": f"Bearer {tok['access_token']}"}).json()
    assert me == {"subject": "user:alice", "roles": ["planner"]}
    # a refresh token works once
    r2 = sec_client.post("/auth/token", json={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r2.status_code == 200
    r3 = sec_client.post("/auth/token", json={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert r3.status_code == 401 and r3.json()["code"] == "token_revoked"
    # revoking kills every token of the user, the fresh access token included
    new = r2.json()
    assert sec_client.post("/auth/revoke", json={"refresh_token": new["refresh_token"]}).status_code == 200
    r4 = sec_client.get("/auth/me", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert r4.status_code == 401 and r4.json()["code"] == "token_revoked"


def test_bad_tokens_are_401_never_anonymous(sec_client):
    tok = login(sec_client).json()
    for header in (f"Bearer {tok['access_token']}x", "Bearer ", "Basic abc", f"Bearer {tok['refresh_token']}",
                   "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyOmFsaWNlIiwidHlwIjoiYWNjZXNzIn0."):
        r = sec_client.get("/auth/me", headers={"Authorization": header})
        assert r.status_code == 401, header
    assert sec_client.get("/auth/me").json() == {"subject": "anonymous", "roles": ["public"]}


def test_expired_token(sec_client, sec_settings):
    import jwt

    from twin.security.secret_box import server_key

    old = jwt.encode({"sub": "user:alice", "typ": "access", "tv": 1, "roles": ["admin"], "exp": int(time.time()) - 5},
                     server_key(sec_settings), algorithm="HS256")
    r = sec_client.get("/auth/me", headers={"Authorization": f"Bearer {old}"})
    assert r.status_code == 401 and r.json()["code"] == "token_expired"


def test_lockout_after_repeated_failures(sec_client):
    for _ in range(3):
        r = login(sec_client, password="wrong-Password-9")
        assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    r = login(sec_client)  # the right password, but the account is locked now
    assert r.status_code == 423 and r.json()["code"] == "account_locked"
    sec_client.accounts.unlock("alice")
    assert login(sec_client).status_code == 200
    # an unknown user gets the same answer as a wrong password
    r = login(sec_client, user="mallory", password="whatever-1A")
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"


@pytest.mark.parametrize("password", ["short1A", "alllowercase", "ALLUPPER123", "12345678901", "lower-and-symbols"])
def test_password_rules(sec_client, password):
    from twin.errors import InvalidParameter

    with pytest.raises(InvalidParameter):
        sec_client.accounts.create_user("bob", password, ["field"])


def test_passwords_and_secrets_are_not_stored_in_clear(sec_client, store):
    with store.engine.connect() as conn:
        pw = conn.execute(text("SELECT password_hash FROM users WHERE username='alice'")).scalar_one()
        sec = conn.execute(text(f"SELECT secret_enc FROM apps WHERE app_id='{APP_ID}'")).scalar_one()
    assert pw.startswith("$argon2id$") and "Correct-Horse-1" not in pw
    assert APP_SECRET not in sec


def test_signed_app_request_gets_a_token_once(sec_client):
    p = {"grant_type": "app_signature", "appID": APP_ID, "timestamp": str(int(time.time())), "nonce": "abc-1"}
    p["sign"] = sign(APP_SECRET, p)
    r = sec_client.post("/auth/token", data=p)
    assert r.status_code == 200 and r.json()["roles"] == ["exchange"]
    again = sec_client.post("/auth/token", data=p)
    assert again.status_code == 401 and again.json()["code"] == "signature_replay"
    bad = {**p, "nonce": "abc-2"}
    assert sec_client.post("/auth/token", data=bad).json()["code"] == "signature_signature"


def test_audit_log_records_and_cannot_be_rewritten(sec_client, store):
    login(sec_client, password="nope-Nope-1")
    login(sec_client)
    r = sec_client.get("/admin/audit", params={"action": "auth.token"}, headers=ADMIN)
    assert r.status_code == 200
    outcomes = [rec["outcome"] for rec in r.json()["records"]]
    assert "ok" in outcomes and "denied" in outcomes
    assert sec_client.get("/admin/audit").status_code == 401
    planner = login(sec_client).json()["access_token"]
    assert sec_client.get("/admin/audit", headers={"Authorization": f"Bearer {planner}"}).status_code == 403
    for stmt in ("UPDATE audit_log SET outcome='ok'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(text(stmt))


def test_audit_csv_neutralises_formulas(sec_client):
    sec_client.post("/auth/token", data={"grant_type": "password", "username": "=HYPERLINK(1)", "password": "x"})
    r = sec_client.get("/admin/audit", params={"f": "csv", "action": "auth.token"}, headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].startswith("id,at,principal")
    assert not any(cell.startswith("=") for line in lines[1:] for cell in line.split(","))
