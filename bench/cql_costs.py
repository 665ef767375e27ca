"""What the CQL2 robustness fixes cost, each against its peer in the same run.

* S_DWITHIN literal: the geodesic circle (``twin.cql.dwithin.grown``) vs the plain buffer in
  an equidistant projection it replaced, for a point at 150 m and 5,500 km.
* PostGIS arithmetic: ``floors * 2 + height_m / 3 > 10`` in ``numeric`` (no overflow errors)
  vs the same in ``integer``/``double precision``, over the buildings of a sample town.
* Parsing + compiling a 60-deep and a 450-term filter (the caps) vs a one-predicate filter.

    PYTHONPATH=. python bench/cql_costs.py [--scale 0.05] [--db postgresql://...]

Numbers from a busy shared machine are indicative only; the lead takes final figures on a
quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from twin import cql
from twin.catalog import get_layer
from twin.cql.dwithin import grown
from twin.db import normalise_url
from twin.dialect import PostgisDialect
from twin.store import SpatialStore, queryables


def timed(fn: Callable[[], Any], n: int) -> float:
    """Median milliseconds of ``n`` calls."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def aeqd_buffer(g: Any, metres: float) -> Any:
    """The S_DWITHIN literal before the fix (invalid across the antimeridian and poles)."""
    c = g.centroid
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m")
    fwd = Transformer.from_crs("OGC:CRS84", aeqd, always_xy=True)
    back = Transformer.from_crs(aeqd, "OGC:CRS84", always_xy=True)
    local = shapely.transform(g, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    return shapely.transform(shapely.buffer(local, metres, quad_segs=32),
                             lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/twin_bench_cql")
    ap.add_argument("-n", type=int, default=50)
    args = ap.parse_args()

    p = shapely.Point(120.9, 31.7)
    for metres in (150.0, 5.5e6):
        print(f"S_DWITHIN literal {metres / 1000:g} km: geodesic circle {timed(lambda m=metres: grown(p, m), args.n):.2f} ms"
              f" | aeqd buffer (peer) {timed(lambda m=metres: aeqd_buffer(p, m), args.n):.2f} ms")

    spec = get_layer("buildings")
    for name, f in [("one predicate", "floors > 3"), ("60 deep", "NOT " * 58 + "floors > 3"),
                    ("450 terms", " OR ".join(f"floors = {i}" for i in range(450)))]:
        def compile_it(f: str = f) -> None:
            e = cql.to_sql(cql.parse(f), spec.table, queryables(spec), PostgisDialect(), "buildings")
            str(e.compile(dialect=postgresql.dialect()))
        print(f"parse+compile {name}: {timed(compile_it, args.n):.2f} ms")

    from sample_data import build_sample_town

    url = make_url(args.db)
    admin = create_engine(normalise_url(url.set(database="postgres")), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    store = SpatialStore.from_url(args.db)
    store.migrate()
    with tempfile.TemporaryDirectory() as tmp:
        build_sample_town(store, Path(tmp), scale=args.scale)
    with store.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM buildings")).scalar_one()
        numeric = text("SELECT count(*) FROM buildings WHERE CAST(floors AS NUMERIC) * 2 "
                       "+ CAST(height_m AS NUMERIC) / NULLIF(3::numeric, 0) > 10")
        native = text("SELECT count(*) FROM buildings WHERE floors * 2 + height_m / NULLIF(3.0, 0) > 10")
        assert conn.execute(numeric).scalar_one() == conn.execute(native).scalar_one()
        print(f"PostGIS arithmetic over {count} buildings: numeric {timed(lambda: conn.execute(numeric).all(), args.n):.2f}"
              f" ms | integer/double (peer) {timed(lambda: conn.execute(native).all(), args.n):.2f} ms")
    store.engine.dispose()


if __name__ == "__main__":
    main()
