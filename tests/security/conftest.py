"""A twin app over a real store (both backends) with a server key, an admin token, an exchange
app and users, for the security tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sec_consts import ADMIN_TOKEN, APP_ID, APP_SECRET

from gis_api.app import create_app
from twin.settings import TwinSettings


@pytest.fixture
def sec_settings(store, tmp_path) -> TwinSettings:
    return TwinSettings(home=tmp_path, database_url=store.engine.url.render_as_string(hide_password=False),
                        admin_token=ADMIN_TOKEN, secret_key="k" * 40, login_max_failures=3, login_lockout_s=60,
                        anonymous_role="public")


@pytest.fixture
def sec_client(store, sec_settings):
    from sqlalchemy import text

    with store.engine.begin() as conn:
        for t in ("exchange_records", "request_nonces", "refresh_tokens", "users", "apps"):
            conn.execute(text(f"DELETE FROM {t}"))
    app = create_app(sec_settings, store=store)
    with TestClient(app) as client:
        from gis_api.security import accounts

        acc = accounts(type("R", (), {"app": app})())  # the app's own Accounts
        acc.create_app(APP_ID, ["exchange"], secret=APP_SECRET)
        acc.create_app("viewer-app", ["public"], secret="other-secret")
        acc.create_user("alice", "Correct-Horse-1", ["planner"])
        client.accounts = acc  # type: ignore[attr-defined]
        yield client
