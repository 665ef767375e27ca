"""Attack-suite cases of issue 9 that need real servers (uvicorn on loopback, real clients): live
WebSocket streams without credentials, with a compression-bomb frame and with a client that never
reads; a signed request replayed to another worker; one role's token used on another role's layer
across every service. Each test names its precedent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import time
import zlib

import httpx
import psutil
import pytest
import websockets

from gis_api.app import create_app
from twin.security.accounts import Accounts
from twin.settings import TwinSettings

ADMIN = "streams-workers-admin-token"
APP_ID, APP_SECRET = "replay-app", "replay-secret-for-tests"
PASSWORD = "Streams-Test-2026"
pytestmark = pytest.mark.parametrize("backend", ["spatialite", "postgis"], indirect=True)


@pytest.fixture(scope="module")
def served(town_store, town_settings, serve_app):
    """The app over the town on a real server, anonymous callers as ``public``; users per role."""
    settings = TwinSettings(**{**town_settings.model_dump(), "anonymous_role": "public", "secret_key": "w" * 40,
                               "admin_token": ADMIN})
    app = create_app(settings, store=town_store)
    acc = Accounts(town_store, settings)
    tokens = {}
    for role in ("public", "field", "planner"):
        name = f"streams-{role}"
        try:
            acc.create_user(name, PASSWORD, [role])
        except Exception:  # noqa: BLE001 - exists from the other backend's run of this module
            pass
        tokens[role] = acc.issue(acc.authenticate(name, PASSWORD))["access_token"]
    with serve_app(app) as url:
        yield {"url": url, "ws": url.replace("http://", "ws://"), "app": app, "tokens": tokens,
               "port": int(url.rsplit(":", 1)[1])}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- raw WebSocket client
def _handshake(port: int, path: str, extensions: str | None = None, rcvbuf: int | None = None) -> socket.socket:
    """Open a WebSocket by hand (so frames can be written as an attacker would); returns the socket
    positioned after the 101 answer's headers."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if extensions:
        req += f"Sec-WebSocket-Extensions: {extensions}\r\n"
    s.sendall((req + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    if extensions:
        assert b"permessage-deflate" in head.lower(), head  # the server agreed to compress
    return s


def _client_frame(payload: bytes, *, opcode: int = 1, rsv1: bool = False) -> bytes:
    n = len(payload)
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
    return head + mask + masked


def _read_until_close(s: socket.socket, limit_s: float) -> int | None:
    """Read server frames until a close frame (its code) or EOF (None), within ``limit_s``."""
    deadline = time.monotonic() + limit_s
    buf = b""

    def need(k: int) -> bytes:
        nonlocal buf
        while len(buf) < k:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not close the connection")
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionResetError
            buf += chunk
        out, buf = buf[:k], buf[k:]
        return out

    try:
        while True:
            b0, b1 = need(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", need(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", need(8))[0]
            payload = need(n)
            if b0 & 0x0F == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    except (ConnectionResetError, OSError):
        return None


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6  # the server runs in this process (a thread)


async def _first_message(url: str) -> dict:
    async with websockets.connect(url, open_timeout=20) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 20))


# --------------------------------------------------------------------------- the tests
def test_a_websocket_without_credentials_gets_nothing_where_a_role_is_required(served):
    """CWE-306 (missing authentication for a critical function) on a WebSocket, which cannot
    carry an Authorization header from a browser and so often escapes the checks of the HTTP
    routes: a stream needing a role answers an error and closes (1008), without a snapshot; a
    bad token is refused, never taken as anonymous."""
    ws = served["ws"]
    for path in ("/live/ws?layers=cameras", "/live/ws?layers=devices,cameras",
                 f"/live/ws?layers=cameras&access_token={'x' * 40}", "/live/ws?access_token=not-a-token"):

        async def run(path: str = path) -> tuple[dict, int | None]:
            async with websockets.connect(ws + path, open_timeout=20) as c:
                first = json.loads(await asyncio.wait_for(c.recv(), 20))
                try:
                    await asyncio.wait_for(c.recv(), 5)
                except websockets.ConnectionClosed as closed:
                    return first, closed.rcvd.code if closed.rcvd else None
                return first, -1  # another message: the stream stayed open

        first, code = asyncio.run(run())
        assert first["type"] == "error" and first["code"] in ("unauthorized", "token_invalid"), (path, first)
        assert "changes" not in first and code == 1008, (path, code)
    # the public role may stream devices and events: that stream still opens for anonymous callers
    assert asyncio.run(_first_message(ws + "/live/ws?layers=devices"))["type"] == "snapshot"
    # with a token whose role may stream cameras, it opens
    field = served["tokens"]["field"]
    assert asyncio.run(_first_message(ws + f"/live/ws?layers=cameras&access_token={field}"))["type"] == "snapshot"


def test_a_compression_bomb_frame_is_refused_in_bounded_memory(served):
    """CWE-409 (highly compressed data) over permessage-deflate (RFC 7692, whose security
    considerations warn of exactly this): a ~0.3 MB frame inflating to 256 MiB must be cut at the
    server's message-size limit, not inflated, and other clients must not notice."""
    s = _handshake(served["port"], "/live/ws?layers=devices", extensions="permessage-deflate")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b" " * (1 << 20)
    body = b"".join(comp.compress(chunk) for _ in range(256)) + comp.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4] if body.endswith(b"\x00\x00\xff\xff") else body
    assert len(body) < 2_000_000
    before = _rss_mb()
    t0 = time.monotonic()
    s.sendall(_client_frame(body, rsv1=True))
    code = _read_until_close(s, 30)
    s.close()
    assert time.monotonic() - t0 < 30
    assert code in (1009, 1002, None), code  # message too big (or the connection dropped)
    assert _rss_mb() - before < 150, "the server inflated the bomb"
    # other clients are unaffected
    assert asyncio.run(_first_message(served["ws"] + "/live/ws?layers=devices"))["type"] == "snapshot"


def test_a_client_that_never_reads_does_not_grow_the_server_or_stall_others(served):
    """Slow-read denial of service (the reading cousin of Slowloris; CVE-2019-9517, "internal data
    buffering" in HTTP/2 servers): a WebSocket client that keeps asking for snapshots but never
    reads them must meet back-pressure, not make the server buffer without bound, and must not
    delay the readings other clients get."""
    url, app, admin = served["url"], served["app"], _bearer(ADMIN)
    devices = [f["id"] for f in httpx.get(f"{url}/live/devices", timeout=30).json()["features"]]
    assert devices
    hub = app.state.live.hub
    before = _rss_mb()
    stuck = _handshake(served["port"], "/live/ws?layers=devices,events", rcvbuf=4096)
    ask = _client_frame(json.dumps({"type": "subscribe", "layers": ["devices", "events"]}).encode()) * 500
    stuck.settimeout(2)
    pushed_back = False
    for _ in range(2000):  # at most 1,000,000 snapshot requests (~60 MB of frames)
        try:
            stuck.sendall(ask)
        except TimeoutError:
            pushed_back = True  # the server stopped reading from a client that does not read
            break
    assert pushed_back, "the server kept reading requests whose answers it could not send"

    async def run() -> float:
        async with websockets.connect(served["ws"] + "/live/ws?layers=devices", open_timeout=20) as reader:
            assert json.loads(await reader.recv())["type"] == "snapshot"
            async with httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as http:
                # until the stuck client is far enough behind that its changes are merged per feature
                # (the hub merges only for a lagging client: one that keeps up gets every change)
                for i in range(400):
                    batch = [{"id": d, "values": {"pm10": 5 + (i * 7 + k) % 20}} for k, d in enumerate(devices)]
                    r = await http.post("/live/devices/features", json=batch)
                    assert r.status_code == 202, r.text[:300]
                    while True:  # keep reading, as a healthy client does
                        try:
                            await asyncio.wait_for(reader.recv(), 0.05)
                        except TimeoutError:
                            break
                    with hub._subs_lock:  # noqa: SLF001 - every subscriber's queue stays within its bound
                        assert all(len(sub._pending) <= sub.maxsize for sub in hub._subs)  # noqa: SLF001
                        if max(sub.coalesced + sub.dropped for sub in hub._subs) > 0:  # noqa: SLF001
                            break
                else:
                    raise AssertionError("the stuck client's changes were never merged: its queue grew unmerged")
                marker = {"id": devices[0], "values": {"pm10": 12.75}}  # below every threshold: no events
                t0 = time.monotonic()
                assert (await http.post("/live/devices/features", json=marker)).status_code == 202
                while time.monotonic() - t0 < 15:
                    raw = await asyncio.wait_for(reader.recv(), 15)
                    if '"pm10":12.75' in (raw if isinstance(raw, str) else raw.decode()):
                        return time.monotonic() - t0
                raise AssertionError("the reading client did not get the new reading")

    took = asyncio.run(run())
    grown = _rss_mb() - before
    stuck.close()
    assert took < 15
    assert grown < 150, f"server memory grew {grown:.0f} MB for one client that never reads"


def _signed(params: dict[str, str]) -> dict[str, str]:
    p = {"appID": APP_ID, "timestamp": str(int(time.time())), "version": "1.0", **params}
    canonical = "&".join(f"{k}={v}" for k, v in sorted(p.items()) if k != "sign")
    return {**p, "sign": hmac.new(APP_SECRET.encode(), canonical.encode(), hashlib.sha256).hexdigest()}


def test_a_signed_request_replayed_to_another_worker_is_refused(town_store, town_settings, serve_app):
    """Replay across a cluster (CWE-294, authentication bypass by capture-replay; the reason
    OAuth 1.0a and AWS SigV4 bind a nonce or date to a shared store): two workers that do not
    share memory, only the database where nonces are kept."""
    settings = TwinSettings(**{**town_settings.model_dump(), "secret_key": "w" * 40, "admin_token": ADMIN})
    acc = Accounts(town_store, settings)
    try:
        acc.create_app(APP_ID, ["exchange"], secret=APP_SECRET)
    except Exception:  # noqa: BLE001 - exists from the other backend's run
        pass
    with serve_app(create_app(settings, store=town_store)) as one, \
            serve_app(create_app(settings, store=town_store)) as two:
        body = _signed({"group": "replay", "table": "t", "nonce": os.urandom(8).hex(),
                        "data": json.dumps([{"a": 1}])})
        first = httpx.post(f"{one}/eUrbanMIS/api/v1/pushdata", data=body, timeout=30)
        assert (first.status_code, first.json()["code"]) == (200, 0), first.text
        again = httpx.post(f"{two}/eUrbanMIS/api/v1/pushdata", data=body, timeout=30)
        assert (again.status_code, again.json()["code"]) == (401, 10008), again.text
        q = _signed({"group": "replay", "table": "t", "nonce": os.urandom(8).hex()})
        assert httpx.get(f"{two}/eUrbanMIS/api/v1/getdata", params=q, timeout=30).json()["code"] == 0
        assert httpx.get(f"{one}/eUrbanMIS/api/v1/getdata", params=q, timeout=30).json()["code"] == 10008


def test_one_roles_token_on_another_roles_layer_in_every_service(served, town_store):
    """Broken object- and function-level authorization (OWASP API Security Top 10 2023, API1 and
    API5): a map server that checks a layer's rules in one service but not in another leaks the
    layer through the other (tiles, scenes, search). Every service refuses the same token."""
    url, tok = served["url"], served["tokens"]
    public, field, planner = (_bearer(tok[r]) for r in ("public", "field", "planner"))
    minx, miny, maxx, maxy = town_store.summary("pipelines").extent
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    bbox = f"{cx - 0.003},{cy - 0.003},{cx + 0.003},{cy + 0.003}"
    with httpx.Client(base_url=url, timeout=60) as c:
        x0, y0, x1, y1 = town_store.summary("cameras").extent
        cones = c.get("/cameras/cones", params={"bbox": f"{x0 - 0.01},{y0 - 0.01},{x1 + 0.01},{y1 + 0.01}"},
                      headers=planner).json()["features"]
        camera = cones[0]["properties"].get("camera_id") or cones[0]["id"]
        denied = {  # role public has no pipelines: a logged-in public user gets 403 everywhere
            "features": c.get("/collections/pipelines/items?limit=1", headers=public),
            "feature": c.get("/collections/pipelines/items/1", headers=public),
            "queryables": c.get("/collections/pipelines/queryables", headers=public),
            "vector tile": c.get("/tiles/pipelines/15/27420/13190.mvt", headers=public),
            "ogc tile": c.get("/collections/pipelines/tiles/WebMercatorQuad/15/13190/27420", headers=public),
            "scene": c.get(f"/scenes/scene.glb?bbox={bbox}&layers=pipelines", headers=public),
            "tileset": c.get("/scenes/tileset.json?layers=pipelines", headers=public),
            "search": c.get("/search", params={"q": "x", "layers": "pipelines"}, headers=public),
            "nearest": c.get(f"/nearest?lon={cx}&lat={cy}&layer=pipelines", headers=public),
            # field may read everything but not analyse; planner may analyse but not write or stream
            "analysis": c.post("/analysis/buffer", headers=field, json={
                "geometry": {"type": "Point", "coordinates": [cx, cy]}, "distance": 50, "layers": ["buildings"]}),
            "process": c.post("/processes/buffer/execution", headers=field, json={"inputs": {
                "geometry": {"type": "Point", "coordinates": [cx, cy]}, "distance": 50, "layers": ["buildings"]}}),
            "live ingest": c.post("/live/devices/features", headers=planner,
                                  json={"id": "X", "values": {"pm10": 1}}),
            "import": c.post("/collections/buildings/import?filename=x.geojson", headers=planner,
                             content=b'{"type": "FeatureCollection", "features": []}'),
            "camera video": c.get(f"/cameras/{camera}/streams", headers=planner),
        }
        for service, r in denied.items():
            assert r.status_code == 403, (service, r.status_code, r.text[:200])
            assert r.json()["code"] in ("forbidden",), (service, r.text[:200])
        # the composite tile and TileJSON leave the layer out rather than leak it
        tj = c.get("/tiles/roads,pipelines/tilejson.json", headers=public).json()
        assert [v["id"] for v in tj["vector_layers"]] == ["roads"]
        # a hidden field stays hidden for a role that may read the layer (field: pipelines' owner)
        feats = c.get("/collections/pipelines/items?limit=3", headers=field).json()["features"]
        assert feats and all("owner" not in f["properties"] for f in feats)

    async def stream() -> dict:
        return await _first_message(served["ws"] + f"/live/ws?layers=cameras&access_token={tok['public']}")

    msg = asyncio.run(stream())
    assert msg["type"] == "error" and msg["code"] == "forbidden", msg
