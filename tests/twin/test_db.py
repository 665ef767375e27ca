"""Engine set-up for both backends."""

from __future__ import annotations

import subprocess
import sys

from twin.db import normalise_url


def test_gdal_wheels_work_after_a_spatialite_connection(tmp_path):
    """SQLite loads mod_spatialite with RTLD_GLOBAL; GDAL-bundling wheels imported after it used to
    bind to the system PROJ and segfault. Run in a subprocess so a crash fails the test, not the run."""
    code = f"""
from sqlalchemy import text
from twin.db import make_engine
e = make_engine("sqlite:///{tmp_path / 'x.sqlite'}")
with e.connect() as c:
    assert c.execute(text("SELECT AsText(ST_Transform(MakePoint(120.9, 31.7, 4326), 3857))")).scalar().startswith("POINT(13458526")
from rasterio.crs import CRS
assert CRS.from_epsg(3857).to_epsg() == 3857
import pyogrio
assert "GPKG" in pyogrio.list_drivers()
from rio_tiler.io import Reader
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_postgresql_urls_use_psycopg3():
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.sqlite").drivername == "sqlite"
