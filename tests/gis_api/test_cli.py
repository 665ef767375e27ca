"""The `twin` command end to end, as an operator types it (subprocesses, a temporary TWIN_HOME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TWIN = [sys.executable, "-m", "gis_api.cli"]


def run(home: Path, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess:
    e = {**os.environ, "TWIN_HOME": str(home), **env}
    e.pop("TWIN_DATABASE_URL", None)
    r = subprocess.run([*TWIN, *args], capture_output=True, text=True, timeout=300, env=e)
    if ok:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    h = tmp_path_factory.mktemp("twin-home")
    run(h, "sample", "--scale", "0.05")
    return h


def test_sample_builds_the_town_and_its_rasters(home):
    assert (home / "twin.sqlite").exists()
    assert (home / "rasters" / "dem.tif").exists() and (home / "rasters" / "ortho.tif").exists()


def test_config_masks_secrets(home):
    r = run(home, "config", TWIN_DEMO_APP_SECRET="very-secret", TWIN_ADMIN_TOKEN="admin-xyz",
            TWIN_REDIS_URL="redis://:pw123@127.0.0.1:6379/0")
    cfg = json.loads(r.stdout)
    assert cfg["effective_database_url"].startswith("sqlite:///")
    assert cfg["demo_app_secret"] == cfg["admin_token"] == "********"
    assert "very-secret" not in r.stdout and "admin-xyz" not in r.stdout and "pw123" not in r.stdout


def test_export_then_load_round_trip(home, tmp_path):
    out = tmp_path / "grids.gpkg"
    run(home, "export", "grids", str(out))
    other = tmp_path / "other-home"
    r = run(other, "load", str(out), "--layer", "grids", "--mode", "replace")
    report = json.loads(r.stdout)
    assert report["written"] == report["read"] > 0


def test_load_of_a_broken_file_fails_with_a_message_and_exit_code_2(home, tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feat')
    r = run(home, "load", str(bad), "--layer", "buildings", ok=False)
    assert r.returncode == 2 and r.stderr.startswith("error: ")


def test_tiles_export_pmtiles_and_seed(home, tmp_path):
    from pmtiles.reader import MmapSource, Reader

    out = tmp_path / "town.pmtiles"
    run(home, "tiles", "export-pmtiles", str(out), "--layers", "buildings,roads", "--zooms", "12-14")
    with out.open("rb") as f:
        header = Reader(MmapSource(f)).header()
    assert header["min_zoom"] == 12 and header["max_zoom"] == 14
    r = run(home, "tiles", "seed", "--layers", "buildings", "--zooms", "13")
    assert json.loads(r.stdout)


def test_bad_arguments_are_refused(home):
    r = run(home, "tiles", "seed", "--layers", "buildings", "--zooms", "ten", ok=False)
    assert r.returncode == 2 and "zooms" in r.stderr


def test_serve_offers_the_warm_pyramid():
    from gis_api.cli import build_parser

    assert build_parser().parse_args(["serve", "--warm"]).warm is True
    assert build_parser().parse_args(["serve"]).warm is False
