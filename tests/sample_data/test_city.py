"""The sample town at city scale: districts streamed into the store (``sample_data.city``)."""

from __future__ import annotations

import rasterio
import shapely
from sqlalchemy import text

from sample_data.city import build_city, plan
from twin.blocks import ensure_blocks

SCALE, DISTRICT = 0.1, 0.05  # two districts of the tiny town


def test_plan_puts_district_0_at_the_town_and_the_others_apart():
    p = plan(100)
    assert len(p) == 10 and {d["scale"] for d in p} == {10.0}
    assert p[0]["origin"] == (120.9, 31.7) and p[0]["prefix"] == "" and p[0]["seed"] == 20261123
    assert len({d["origin"] for d in p}) == 10 and len({d["prefix"] for d in p}) == 10
    assert len(plan(10)) == 1 and len(plan(0.3, district_scale=0.1)) == 3


def test_city_of_two_districts(empty_store, client_for, tmp_path):
    store = empty_store
    jobs = 2 if store.engine.dialect.name == "postgresql" else 1
    with store.engine.connect() as conn:
        before = set(conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'buildings'")).scalars()) \
            if store.engine.dialect.name == "postgresql" else set()
    res = build_city(store, tmp_path / "rasters", scale=SCALE, district_scale=DISTRICT, jobs=jobs, progress=False)
    assert res["districts"] == 2 and res["buildings"] > 1000
    with store.engine.connect() as conn:
        codes = conn.execute(text("SELECT code FROM buildings")).scalars().all()
        assert len(codes) == len(set(codes)) == res["buildings"]
        d1 = [c for c in codes if c.startswith("D01-")]
        assert d1 and len(d1) < len(codes)  # district 1 prefixed, district 0 as the town itself
        # cross-references stay inside their district: every pipe ends at a stored node
        dangling = conn.execute(text(
            "SELECT count(*) FROM pipelines p WHERE p.start_node_code IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM pipe_nodes n WHERE n.code = p.start_node_code)")).scalar_one()
        assert dangling == 0
        orphans = conn.execute(text(
            "SELECT count(*) FROM buildings b WHERE b.grid_code IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM grids g WHERE g.code = b.grid_code)")).scalar_one()
        assert orphans == 0
        steps = conn.execute(text("SELECT count(DISTINCT event_id) FROM event_transitions")).scalar_one()
        assert steps == res["events"]  # every event of both districts has its history
        if before:
            after = set(conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'buildings'")).scalars())
            assert after == before  # the deferred indexes are back
        xmin, xmax = ("ST_XMin", "ST_XMax") if before else ("MbrMinX", "MbrMaxX")
        boxes = conn.execute(text(
            f"SELECT min({xmin}(geom)), max({xmax}(geom)) FROM buildings GROUP BY code LIKE 'D01-%' "
            "ORDER BY 1")).all()
    assert boxes[0][1] < boxes[1][0]  # district 1 lies west of district 0, apart
    assert ensure_blocks(store) == 0  # blocks were built with the city: a server finds them up to date
    # a user reads district 1 through the API
    b1 = (boxes[0][0], 31.6, boxes[0][1], 31.8)
    r = client_for(store).get("/collections/buildings/items", params={"bbox": ",".join(map(str, b1)), "limit": 5})
    assert r.status_code == 200
    assert all(f["properties"]["code"].startswith("D01-") for f in r.json()["features"])
    # one mosaicked DEM covering both districts
    with rasterio.open(tmp_path / "rasters" / "dem.tif") as dem:
        west, _, east, _ = dem.bounds
        assert dem.crs.to_epsg() == 3857
    merc = shapely.transform(shapely.points([(boxes[0][0], 31.7), (boxes[1][1], 31.7)]),
                             lambda c: c * [111319.49, 1])
    assert west <= shapely.get_x(merc[0]) + 200 and east >= shapely.get_x(merc[1]) - 200
