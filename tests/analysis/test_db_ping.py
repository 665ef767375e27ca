"""Pooled PostgreSQL connections are pinged only after sitting idle (twin.db.ping_idle_connections):
one killed while idle is replaced without the caller seeing an error."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from twin.db import PING_IDLE_S, make_engine


@pytest.mark.parametrize("backend", ["postgis"], indirect=True)
def test_a_connection_killed_while_idle_is_replaced(store):
    eng = make_engine(store.engine.url.render_as_string(hide_password=False), statement_timeout_ms=1234)
    try:
        with eng.connect() as c:
            pid = c.execute(text("SELECT pg_backend_pid()")).scalar()
        with store.engine.connect() as admin:  # the server ends it (a restart, an idle timeout…)
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        time.sleep(PING_IDLE_S + 0.2)
        with eng.connect() as c:
            assert c.execute(text("SELECT pg_backend_pid()")).scalar() != pid
            assert c.execute(text("SHOW statement_timeout")).scalar() == "1234ms"  # still a connection option
        # used moments ago: handed out as is (no ping), same backend
        with eng.connect() as c:
            again = c.execute(text("SELECT pg_backend_pid()")).scalar()
        with eng.connect() as c:
            assert c.execute(text("SELECT pg_backend_pid()")).scalar() == again
    finally:
        eng.dispose()
