"""Reading a layer's rows for 3D: only the columns the meshes need, straight into arrays.

Scenes read thousands of rows per request, so this skips the feature service's
per-row dicts: one SELECT of ``id``, the :data:`scenes.layers.READ_COLUMNS` and the
geometry as WKB, by bbox (the dialect's index-backed clause) or by id list (a tile's
features), then one vectorised ``shapely.from_wkb``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from sqlalchemy import select

from scenes.layers import READ_COLUMNS, LayerRows
from twin.catalog import get_layer
from twin.dialect import BBox
from twin.errors import LimitExceeded
from twin.store import SpatialStore

#: ids per ``IN (…)`` statement when reading a tile's features
ID_BATCH = 5000


def read_rows(store: SpatialStore, layer: str, *, bbox: BBox | None = None, ids: Sequence[int] | None = None,
              cap: int | None = None) -> LayerRows:
    """Rows of ``layer`` touching ``bbox`` and/or with the given ``ids``; more than ``cap`` → LimitExceeded."""
    tbl = get_layer(layer).table
    cols = [tbl.c[c] for c in READ_COLUMNS[layer]]
    base = select(tbl.c.id, *cols, store.dialect.geometry_wkb(tbl).label("wkb"))
    if bbox is not None:
        base = base.where(store.dialect.bbox_clause(tbl, bbox))
    rows: list = []
    with store.engine.connect() as conn:
        if ids is None:
            stmt = base.order_by(tbl.c.id)
            if cap is not None:
                stmt = stmt.limit(cap + 1)
            rows = list(conn.execute(stmt).all())
        else:
            wanted = np.unique(np.asarray(ids, dtype=np.int64))
            for i in range(0, len(wanted), ID_BATCH):
                chunk = [int(v) for v in wanted[i:i + ID_BATCH]]
                rows.extend(conn.execute(base.where(tbl.c.id.in_(chunk))).all())
    if cap is not None and len(rows) > cap:
        raise LimitExceeded(f"more than {cap} {layer} in the bbox; ask for a smaller area or use the tileset",
                            detail={"max_features": cap})
    n = len(rows)
    ids_arr = np.fromiter((r[0] for r in rows), np.int64, n)
    columns = {}
    for k, name in enumerate(READ_COLUMNS[layer], start=1):
        arr = np.empty(n, dtype=object)
        arr[:] = [r[k] for r in rows]
        columns[name] = arr
    geoms = shapely.from_wkb([bytes(r[-1]) for r in rows]) if n else np.zeros(0, dtype=object)
    out = LayerRows(layer, ids_arr, columns, np.asarray(geoms, dtype=object))
    return out.take(~shapely.is_empty(out.geoms)) if n else out
