"""Rate limits per principal (also across workers through Redis), the database circuit breaker
with a real outage (a TCP relay to PostgreSQL that the test cuts and restores), body caps and
security headers."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from gis_api.app import create_app
from twin.settings import TwinSettings
from twin.store import SpatialStore

REDIS = os.environ.get("TWIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ADMIN = "guard-test-admin-token-0123456789"


def _settings(store, tmp_path, **kw) -> TwinSettings:
    return TwinSettings(home=tmp_path, database_url=store.engine.url.render_as_string(hide_password=False), **kw)


def test_rate_limit_is_per_principal_with_retry_after(store, tmp_path):
    settings = _settings(store, tmp_path, rate_limit_rps=2, rate_limit_burst=5, admin_token=ADMIN)
    with TestClient(create_app(settings, store=store)) as c:
        codes = [c.get("/collections").status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        r = c.get("/collections")
        assert r.status_code == 429 and r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
        # another principal (a genuine token) is not held back by the first one's burst
        other = c.get("/collections", headers={"Authorization": f"Bearer {ADMIN}"})
        assert other.status_code != 429
        # a made-up token is no principal: it spends the address's (empty) bucket, not a fresh one
        made_up = c.get("/collections", headers={"Authorization": "Bearer made-up-1"})
        assert made_up.status_code == 429
        assert c.get("/healthz").status_code == 200  # never limited
        time.sleep(1.1)
        assert c.get("/collections").status_code == 200  # the bucket refills


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_rate_limit_holds_across_workers_through_redis(store, tmp_path):
    import redis

    redis.Redis.from_url(REDIS).delete("twin:rl:ip:testclient")  # this test's bucket only: the db is shared
    kw = {"rate_limit_rps": 1, "rate_limit_burst": 6, "rate_limit_redis": True, "redis_url": REDIS}
    with TestClient(create_app(_settings(store, tmp_path, **kw), store=store)) as a, \
            TestClient(create_app(_settings(store, tmp_path, **kw), store=store)) as b:
        codes = [(a if i % 2 else b).get("/collections").status_code for i in range(10)]
    assert codes.count(200) == 6 and codes.count(429) == 4, codes


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_invented_tokens_do_not_get_fresh_buckets(store, tmp_path):
    """Precedent: per-token buckets keyed on the raw header let a client mint a new bucket per
    request (found by the security review of this project). Genuine tokens of one principal
    share one bucket; tokens that do not verify share the client address's bucket."""
    from twin.security.accounts import Accounts

    settings = _settings(store, tmp_path, rate_limit_rps=1, rate_limit_burst=4, admin_token=ADMIN)
    with TestClient(create_app(settings, store=store)) as c:
        codes = [c.get("/tileMatrixSets", headers={"Authorization": f"Bearer invented-{i}"}).status_code
                 for i in range(8)]
        assert codes[:4] == [200] * 4 and codes[4:] == [429] * 4, codes
        # two access tokens of one user draw from that user's one bucket, not the address's
        acc = Accounts(store, settings)
        acc.create_user("ratelimited", "Str0ng-pass!", roles=["operator"])
        tokens = [acc.issue(acc.authenticate("ratelimited", "Str0ng-pass!"))["access_token"] for _ in range(2)]
        codes = [c.get("/tileMatrixSets", headers={"Authorization": f"Bearer {tokens[i % 2]}"}).status_code
                 for i in range(8)]
        assert codes[:4] == [200] * 4 and 429 in codes[4:], codes


class Relay:
    """A TCP relay 127.0.0.1:port → PostgreSQL that can be cut (connections refused) and restored."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = True
        self.conns: list[socket.socket] = []
        #: connections asked for (refused ones too)
        self.attempts = 0
        self.sock.listen(50)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.attempts += 1
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.up = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []

    def restore(self) -> None:
        self.up = True


@pytest.mark.parametrize("backend", ["postgis"], indirect=True)
def test_circuit_breaker_opens_fast_and_recovers_by_itself(store, tmp_path):
    from sqlalchemy.engine import make_url

    url = make_url(store.engine.url.render_as_string(hide_password=False))
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    via = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    relayed = SpatialStore.from_url(via)
    settings = TwinSettings(home=tmp_path, database_url=via, breaker_failures=2, breaker_cooldown_s=1.0)
    with TestClient(create_app(settings, store=relayed)) as c:
        assert c.get("/collections/buildings/items?limit=1").status_code == 200
        relay.cut()
        codes = [c.get("/collections/buildings/items?limit=1").status_code for _ in range(2)]
        assert codes == [503, 503]
        attempts = relay.attempts
        r = c.get("/collections/buildings/items?limit=1")
        assert r.status_code == 503 and "circuit" in r.json()["message"] and r.headers["retry-after"] == "1"
        time.sleep(0.2)  # a connection attempt, had there been one, has reached the relay by now
        assert relay.attempts == attempts  # answered without touching the database
        assert c.get("/healthz").status_code == 200
        relay.restore()
        time.sleep(1.1)
        assert c.get("/collections/buildings/items?limit=1").status_code == 200
        assert c.app.state.breaker.state == "closed"
    relayed.engine.dispose()


def test_body_cap_and_security_headers(town_client):
    r = town_client.post("/auth/token", content=b"x" * 10, headers={"content-length": str(64 * 1024 * 1024)})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    page = town_client.get("/", headers={"accept": "text/html"})
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    api = town_client.get("/collections")
    assert api.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in api.headers
