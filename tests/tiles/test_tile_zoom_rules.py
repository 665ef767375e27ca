"""Features a layer's tiles carry only from some zoom on (``LayerSpec.tile_from_zoom``): closed events."""

from __future__ import annotations

import gzip

import mapbox_vector_tile

from tiles.tms import Tile
from twin.catalog import CLOSED_EVENTS_ZOOM, get_layer
from twin.store import FeatureQuery


def _tile_at(lon: float, lat: float, z: int) -> Tile:
    import math

    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return Tile(z, x, y)


def _statuses(client, tile: Tile) -> dict[int, str]:  # noqa: ANN001 - TestClient
    r = client.get(f"/tiles/events/{tile.z}/{tile.x}/{tile.y}.mvt", headers={"Accept-Encoding": "gzip"})
    assert r.status_code in (200, 204), r.text
    if r.status_code == 204 or not r.content:
        return {}
    body = r.content
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    layer = mapbox_vector_tile.decode(body).get("events", {"features": []})
    return {f["id"]: f["properties"]["status"] for f in layer["features"]}


def test_closed_events_are_in_tiles_from_their_zoom_only(town_client, town_store):
    """A user's tile client sees open events at every zoom and closed ones from z15, where the style
    draws them; the feature service still lists every event."""
    assert get_layer("events").tile_exclusions(CLOSED_EVENTS_ZOOM - 1) == (("status", "closed"),)
    assert get_layer("events").tile_exclusions(CLOSED_EVENTS_ZOOM) == ()
    page = town_store.query(FeatureQuery(layer="events", limit=10_000))
    closed = [(fid, g) for fid, p, g in zip(page.ids, page.properties, page.geometries, strict=True)
              if p["status"] == "closed"]
    opened = [(fid, g) for fid, p, g in zip(page.ids, page.properties, page.geometries, strict=True)
              if p["status"] != "closed"]
    assert closed and opened, "the sample town has closed and open events"
    for fid, g in closed[:5]:
        for z in (12, CLOSED_EVENTS_ZOOM - 1):
            assert fid not in _statuses(town_client, _tile_at(g.x, g.y, z)), f"closed event {fid} in a z{z} tile"
        got = _statuses(town_client, _tile_at(g.x, g.y, CLOSED_EVENTS_ZOOM))
        assert got.get(fid) == "closed", f"closed event {fid} missing from its z{CLOSED_EVENTS_ZOOM} tile"
    for fid, g in opened[:5]:
        for z in (12, CLOSED_EVENTS_ZOOM):
            assert fid in _statuses(town_client, _tile_at(g.x, g.y, z)), f"open event {fid} missing at z{z}"
    r = town_client.get("/collections/events/items", params={"limit": 1, "status": "closed"})
    assert r.status_code == 200 and r.json()["features"], "the feature service still has closed events"
