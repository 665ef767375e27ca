"""``twin user …`` and ``twin app …`` through the CLI entry point, on both backends."""

from __future__ import annotations

import io

from sqlalchemy import text

from gis_api.cli import main
from twin.security import audit
from twin.security.accounts import Accounts
from twin.settings import TwinSettings, get_settings


def test_user_and_app_commands(store, tmp_path, monkeypatch, capsys, request):
    url = store.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("TWIN_DATABASE_URL", url)
    monkeypatch.setenv("TWIN_HOME", str(tmp_path))
    monkeypatch.setenv("TWIN_SECRET_KEY", "c" * 40)
    get_settings.cache_clear()  # the CLI reads the environment once per process
    request.addfinalizer(get_settings.cache_clear)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE username = 'carol'"))
        conn.execute(text("DELETE FROM apps WHERE app_id = 'district-7'"))
    monkeypatch.setattr("sys.stdin", io.StringIO("weak\n"))
    assert main(["user", "add", "carol", "--roles", "field", "--password-stdin"]) != 0
    assert "password must have" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("Field-Work-2026\n"))
    assert main(["user", "add", "carol", "--roles", "field", "--password-stdin"]) == 0
    assert main(["user", "list"]) == 0
    assert '"carol"' in capsys.readouterr().out
    assert main(["app", "add", "district-7", "--roles", "exchange"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    acc = Accounts(store, TwinSettings(home=tmp_path, database_url=url, secret_key="c" * 40))
    assert acc.app_secret("district-7") == (secret, frozenset({"exchange"}))
    assert acc.authenticate("carol", "Field-Work-2026").roles == {"field"}
    assert main(["user", "roles", "carol", "--roles", "nonsense"]) != 0
    _, records = audit.query(store, action="admin.app_add")
    assert any(r["target"] == "district-7" for r in records)
