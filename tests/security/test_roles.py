"""Roles to layer and field, enforced on every service that exists: features, queryables,
CQL2, sortby, vector tiles (composite and single), TileJSON, the style, WMTS and OGC API Tiles,
imports — with the product's default: anonymous callers get the role `public`."""

from __future__ import annotations

import mapbox_vector_tile
import morecantile
import pytest
from fastapi.testclient import TestClient

from gis_api.app import create_app
from tiles.tms import Tile
from twin.security.accounts import Accounts
from twin.settings import TwinSettings

pytestmark = pytest.mark.parametrize("backend", ["spatialite", "postgis"], indirect=True)


@pytest.fixture(scope="module")
def public_client(town_store, town_settings):
    settings = TwinSettings(**{**town_settings.model_dump(), "anonymous_role": "public", "secret_key": "r" * 40})
    app = create_app(settings, store=town_store)
    with TestClient(app) as client:
        acc = Accounts(town_store, settings)
        tokens = {}
        for role in ("planner", "field", "operator"):
            name = f"roles-test-{role}"
            try:
                acc.create_user(name, "Roles-Test-2026", [role])
            except Exception:  # noqa: BLE001 - exists from the other backend's run of this module
                pass
            tokens[role] = {"Authorization": "Bearer " + acc.issue(acc.authenticate(name, "Roles-Test-2026"))[
                "access_token"]}
        client.tokens = tokens  # type: ignore[attr-defined]
        yield client


def _pipe_tile(town_store, z=15) -> Tile:
    """The tile holding the most pipelines' midpoints at zoom z."""
    from collections import Counter

    tms = morecantile.tms.get("WebMercatorQuad")
    feats = town_store.query(_query("pipelines")).geometries
    counts = Counter(tuple(tms.tile(*g.interpolate(0.5, normalized=True).coords[0], z)) for g in feats)
    x, y, zz = counts.most_common(1)[0][0]
    return Tile(zz, x, y)


def _query(layer):
    from twin.store import FeatureQuery

    return FeatureQuery(layer=layer, limit=10_000)


def test_features_respect_layer_permissions(public_client):
    c, tok = public_client, public_client.tokens
    ids = [x["id"] for x in c.get("/collections").json()["collections"]]
    assert "buildings" in ids and "pipelines" not in ids and "pipe_nodes" not in ids
    for path in ("/collections/pipelines", "/collections/pipelines/items", "/collections/pipelines/items/1",
                 "/collections/pipelines/queryables", "/collections/pipelines/tiles"):
        r = c.get(path)
        assert r.status_code == 401 and "not public" in r.json()["message"], path
    r = c.get("/collections/pipelines/items?limit=2", headers=tok["planner"])
    assert r.status_code == 200 and r.json()["numberReturned"] == 2
    assert "owner" in r.json()["features"][0]["properties"]


def test_hidden_fields_do_not_exist_for_the_role(public_client):
    c, field = public_client, public_client.tokens["field"]
    feats = c.get("/collections/pipelines/items?limit=5", headers=field).json()["features"]
    assert feats and all("owner" not in f["properties"] and "pressure_mpa" not in f["properties"] for f in feats)
    assert "diameter_mm" in feats[0]["properties"]
    fid = feats[0]["id"]
    one = c.get(f"/collections/pipelines/items/{fid}", headers=field).json()
    assert "owner" not in one["properties"] and "material" in one["properties"]
    q = c.get("/collections/pipelines/queryables", headers=field).json()["properties"]
    assert "owner" not in q and "pressure_mpa" not in q and "diameter_mm" in q
    # naming a hidden field anywhere is answered as for a field that does not exist
    for params in ({"owner": "x"}, {"properties": "code,owner"}, {"sortby": "-pressure_mpa"},
                   {"filter": "pressure_mpa > 0.1"}, {"filter": "code = 'a' OR (NOT (owner LIKE '%'))"},
                   {"filter": '{"op": "=", "args": [{"property": "owner"}, "x"]}', "filter-lang": "cql2-json"}):
        r = c.get("/collections/pipelines/items", params=params, headers=field)
        assert r.status_code == 400 and "unknown property" in r.json()["message"], params
    # public: a household count is hidden on buildings
    b = c.get("/collections/buildings/items?limit=3").json()["features"]
    assert b and all("households" not in f["properties"] for f in b) and "floors" in b[0]["properties"]
    assert c.get("/collections/buildings/items?households=3").status_code == 400


def test_tiles_tilejson_and_style_carry_only_readable_layers(public_client, town_store):
    c, tok = public_client, public_client.tokens
    t = _pipe_tile(town_store)
    composite = f"/tiles/roads,pipelines,buildings/{t.z}/{t.x}/{t.y}.mvt"
    for _ in range(2):  # the second time the tile is in the memory cache: the fast path must still refuse
        anon = c.get(composite)
        assert anon.status_code in (200, 204)
        assert "pipelines" not in (mapbox_vector_tile.decode(anon.content) if anon.content else {})
        assert c.get(f"/tiles/pipelines/{t.z}/{t.x}/{t.y}.mvt").status_code == 401
    full = c.get(composite, headers=tok["operator"])
    assert "pipelines" in mapbox_vector_tile.decode(full.content)
    assert anon.headers.get("etag") != full.headers.get("etag")
    # what a token sees is for that caller only: no shared cache (nginx, a CDN) may hand it to others
    assert anon.headers["cache-control"].startswith("public")
    assert full.headers["cache-control"].startswith("private, ")
    again = c.get(composite, headers={**tok["operator"], "If-None-Match": full.headers["etag"]})
    assert again.status_code == 304 and again.headers["cache-control"].startswith("private, ")
    tj = c.get("/tiles/roads,pipelines/tilejson.json").json()
    assert [v["id"] for v in tj["vector_layers"]] == ["roads"]
    style = c.get("/styles/twin.json").json()
    assert not any(lyr.get("source-layer") in ("pipelines", "pipe_nodes") for lyr in style["layers"])
    assert all("pipelines" not in str(s.get("tiles")) for s in style["sources"].values())
    assert all("pipelines" not in url for url in style["metadata"]["twin:tilejson"].values())
    style_op = c.get("/styles/twin.json", headers=tok["operator"]).json()
    assert any(lyr.get("source-layer") == "pipelines" for lyr in style_op["layers"])
    ogc = c.get(f"/collections/pipelines/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}")
    assert ogc.status_code == 401


def test_wmts_lists_only_readable_vector_layers(public_client):
    c = public_client
    xml = c.get("/wmts/1.0.0/WMTSCapabilities.xml").text
    assert "<ows:Identifier>buildings</ows:Identifier>" in xml and "<ows:Identifier>pipelines</ows:Identifier>" not in xml
    xml_op = c.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", headers=c.tokens["operator"]).text
    assert "<ows:Identifier>pipelines</ows:Identifier>" in xml_op


def test_imports_need_write_permission_and_denials_are_audited(public_client, town_store):
    from twin.security import audit

    c = public_client
    body = b'{"type": "FeatureCollection", "features": []}'
    assert c.post("/collections/buildings/import?filename=x.geojson", content=body).status_code == 401
    r = c.post("/collections/buildings/import?filename=x.geojson", content=body, headers=c.tokens["field"])
    assert r.status_code == 403 and r.json()["detail"]["permission"] == "write"
    _, recs = audit.query(town_store, action="deny.write")
    assert any(rec["principal"] == "user:roles-test-field" for rec in recs)


def test_scenes_leave_out_what_the_role_may_not_read(public_client, town_store):
    c = public_client
    minx, miny, maxx, maxy = town_store.summary("pipelines").extent
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    bbox = f"{cx - 0.003},{cy - 0.003},{cx + 0.003},{cy + 0.003}"
    url = f"/scenes/scene.glb?bbox={bbox}&layers=buildings,pipelines"
    anon, op = c.get(url), c.get(url, headers=c.tokens["operator"])
    assert anon.status_code == op.status_code == 200
    assert b"pipelines" in op.content and b"pipelines" not in anon.content  # property tables are named per layer
    assert c.get(f"/scenes/scene.glb?bbox={bbox}&layers=pipelines").status_code == 401
    assert c.get("/scenes/tileset.json?layers=pipelines").status_code == 401
    assert c.get("/scenes/tileset.json?layers=buildings,pipelines").status_code == 200


def test_guests_see_where_cameras_look_but_not_their_video(public_client, town_store):
    c = public_client
    minx, miny, maxx, maxy = town_store.summary("cameras").extent
    cones = c.get(f"/cameras/cones?bbox={minx - 0.01},{miny - 0.01},{maxx + 0.01},{maxy + 0.01}").json()
    assert cones["features"]
    assert all(not ({"streams", "stream_url", "play_urls"} & set(f["properties"])) for f in cones["features"])
    cam_id = cones["features"][0]["properties"].get("camera_id") or cones["features"][0].get("id")
    assert c.get(f"/cameras/{cam_id}/streams").status_code == 401
    assert c.get("/video/demo/index.m3u8").status_code == 401
    assert c.get(f"/cameras/{cam_id}/streams", headers=c.tokens["operator"]).status_code == 200
    r = c.post("/events/1/transitions", json={"to": "verified", "by": "x"}, headers=c.tokens["planner"])
    assert r.status_code == 403


def test_analyses_need_analyse_and_search_stays_in_readable_layers(public_client, town_store):
    c, tok = public_client, public_client.tokens
    minx, miny, maxx, maxy = town_store.summary("pipelines").extent
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    body = {"geometry": {"type": "Point", "coordinates": [cx, cy]}, "distance": 50, "layers": ["buildings"]}
    assert c.post("/analysis/buffer", json=body).status_code == 401
    assert c.post("/analysis/buffer", json=body, headers=tok["field"]).status_code == 403
    assert c.post("/analysis/buffer", json=body, headers=tok["planner"]).status_code == 200
    assert c.get(f"/analysis/flow-direction?bbox={minx},{miny},{maxx},{maxy}").status_code == 401
    assert c.post("/processes/buffer/execution", json={"inputs": body}).status_code == 401
    code = c.get("/collections/pipelines/items?limit=1", headers=tok["operator"]).json()["features"][0][
        "properties"]["code"]
    assert not [f for f in c.get("/search", params={"q": code}).json()["features"]
                if f["properties"]["layer"] == "pipelines"]
    assert c.get("/search", params={"q": code, "layers": "pipelines"}).status_code == 401
    assert c.get(f"/nearest?lon={cx}&lat={cy}&layer=pipelines").status_code == 401


def test_live_streams_and_ingest_follow_the_roles(public_client):
    c, tok = public_client, public_client.tokens
    # public may stream devices and events, not cameras; may not ingest
    assert c.get("/live/devices").status_code == 200
    r = c.post("/live/devices/features", json={"id": "X", "values": {"pm10": 1}})
    assert r.status_code == 401
    r = c.post("/live/devices/features", json={"id": "X", "values": {"pm10": 1}}, headers=tok["planner"])
    assert r.status_code == 403
    with c.websocket_connect("/live/ws?layers=cameras") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["code"] == "unauthorized"
    with c.websocket_connect("/live/ws") as ws:  # the default: what the guest may stream
        msg = ws.receive_json()
        assert msg["type"] == "snapshot" and msg["layers"] == ["devices", "events"] or \
            set(msg["layers"]) <= {"devices", "events"}
    token = tok["operator"]["Authorization"].split()[1]
    with c.websocket_connect(f"/live/ws?layers=cameras&access_token={token}") as ws:
        assert ws.receive_json()["type"] == "snapshot"
