"""A replace import never loses rows it did not replace with accepted ones (issue 14, finding 1).

Through the Python API (``load_file``), the HTTP upload and ``twin load``, on both backends:
a replace whose every row is rejected is refused and the layer is left exactly as it was;
a replace that goes through leaves exactly the accepted rows and says what it deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.errors import LoadFailed
from twin.loader import load_file
from twin.store import FeatureQuery, SpatialStore

TOKEN = "test-admin-token"
LON, LAT = 120.62, 31.30


def _valid(code: str, i: int) -> dict:
    box = shapely.box(LON + i * 1e-3, LAT, LON + i * 1e-3 + 3e-4, LAT + 2e-4)
    return {"type": "Feature", "properties": {"code": code, "use": "residential", "floors": 3, "height_m": 9.0},
            "geometry": shapely.geometry.mapping(box)}


def _rejected(code: str, i: int, kind: str) -> dict:
    """A row the loader rejects: a Point for a MultiPolygon layer, no geometry, or a non-integer floor count."""
    f = _valid(code, i)
    if kind == "point":
        f["geometry"] = {"type": "Point", "coordinates": [LON + i * 1e-3, LAT]}
    elif kind == "no-geometry":
        f["geometry"] = None
    else:
        f["properties"]["floors"] = "five"
    return f


def _file(dir_: Path, features: list[dict], name: str = "in.geojson") -> Path:
    path = dir_ / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def _codes(store: SpatialStore) -> set[str]:
    page = store.query(FeatureQuery(layer="buildings", limit=10_000, properties=["code"]))
    return {p["code"] for p in page.properties}


def _seed(store: SpatialStore, n: int) -> None:
    store.clear(["buildings"])
    if n:
        store.write_features("buildings", [
            {"code": f"OLD{i}", "use": "public", "floors": 1, "height_m": 3.0,
             "geom": shapely.box(LON + i * 1e-3, LAT - 0.01, LON + i * 1e-3 + 3e-4, LAT - 0.01 + 2e-4)}
            for i in range(n)])


def _all_rejected(tmp_path: Path) -> Path:
    return _file(tmp_path, [_rejected("P1", 1, "point"), _rejected("P2", 2, "point")])


# --- the reported case --------------------------------------------------------------------


def test_replace_whose_every_row_is_rejected_is_refused_and_keeps_the_layer(empty_store, tmp_path):
    _seed(empty_store, 5)
    before = (_codes(empty_store), empty_store.version("buildings"))
    with pytest.raises(LoadFailed, match="all 2 rows rejected; refusing to replace") as err:
        load_file(empty_store, _all_rejected(tmp_path), "buildings", mode="replace", max_rejects=10)
    assert err.value.detail["accepted"] == 0 and err.value.detail["rejected_count"] == 2
    assert (_codes(empty_store), empty_store.version("buildings")) == before


def test_append_whose_every_row_is_rejected_within_max_rejects_writes_nothing(empty_store, tmp_path):
    _seed(empty_store, 3)
    report = load_file(empty_store, _all_rejected(tmp_path), "buildings", mode="append", max_rejects=10)
    assert (report.written, report.deleted, report.rejected_count) == (0, 0, 2)
    assert _codes(empty_store) == {"OLD0", "OLD1", "OLD2"}


def test_replace_report_says_what_it_deleted_and_wrote(empty_store, tmp_path):
    _seed(empty_store, 4)
    path = _file(tmp_path, [_valid("N1", 1), _rejected("N2", 2, "point"), _valid("N3", 3)])
    report = load_file(empty_store, path, "buildings", mode="replace", max_rejects=1)
    assert (report.deleted, report.written, report.rejected_count) == (4, 2, 1)
    assert report.to_dict()["deleted"] == 4
    assert _codes(empty_store) == {"N1", "N3"}


def test_http_replace_with_every_row_rejected_is_a_422_and_keeps_the_layer(empty_store, client_for, tmp_path):
    client = client_for(empty_store, admin_token=TOKEN)
    _seed(empty_store, 5)
    version = empty_store.version("buildings")
    r = client.post("/collections/buildings/import", content=_all_rejected(tmp_path).read_bytes(),
                    params={"filename": "b.geojson", "mode": "replace", "max-rejects": 10},
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "load_failed" and "refusing to replace" in body["message"]
    assert empty_store.summary("buildings").count == 5 and empty_store.version("buildings") == version


def test_http_replace_reports_rows_deleted_and_written(empty_store, client_for, tmp_path):
    client = client_for(empty_store, admin_token=TOKEN)
    _seed(empty_store, 5)
    path = _file(tmp_path, [_valid("N1", 1), _valid("N2", 2)])
    r = client.post("/collections/buildings/import", content=path.read_bytes(),
                    params={"filename": "b.geojson", "mode": "replace"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert (r.json()["deleted"], r.json()["written"]) == (5, 2)
    assert _codes(empty_store) == {"N1", "N2"}


def test_cli_replace_with_every_row_rejected_fails_and_keeps_the_layer(empty_store, tmp_path):
    _seed(empty_store, 5)
    env = {**os.environ, "TWIN_HOME": str(tmp_path),
           "TWIN_DATABASE_URL": empty_store.engine.url.render_as_string(hide_password=False)}
    r = subprocess.run([sys.executable, "-m", "gis_api.cli", "load", str(_all_rejected(tmp_path)), "--layer",
                        "buildings", "--mode", "replace", "--max-rejects", "10"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert "refusing to replace" in r.stderr
    assert empty_store.summary("buildings").count == 5


# --- the class: any mix of accepted and rejected rows, any max-rejects ----------------------

ROW = st.sampled_from(["valid", "point", "no-geometry", "bad-floors"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(ROW, min_size=1, max_size=8), max_rejects=st.integers(0, 9), stored=st.integers(0, 4))
def test_replace_leaves_the_layer_unchanged_or_exactly_the_accepted_rows(store, kinds, max_rejects, stored):
    _seed(store, stored)
    before = (_codes(store), store.version("buildings"))
    features = [_valid(f"N{i}", i) if k == "valid" else _rejected(f"N{i}", i, k) for i, k in enumerate(kinds)]
    accepted = {f"N{i}" for i, k in enumerate(kinds) if k == "valid"}
    rejected = len(kinds) - len(accepted)
    with tempfile.TemporaryDirectory() as tmp:
        path = _file(Path(tmp), features)
        try:
            report = load_file(store, path, "buildings", mode="replace", max_rejects=max_rejects)
        except LoadFailed:
            assert rejected > max_rejects or not accepted
            assert (_codes(store), store.version("buildings")) == before  # refused: exactly unchanged
            return
    assert accepted and rejected <= max_rejects
    after = _codes(store)
    assert after == accepted  # exactly the accepted rows: never fewer
    assert (report.written, report.deleted, report.rejected_count) == (len(accepted), stored, rejected)
