"""Which things can report on which live layer: the static ``devices`` and ``cameras`` tables.

The live layer ``devices`` takes readings from the rows of the static ``devices`` layer
(by ``code``), ``cameras`` from ``cameras``. The registry reads them once and again
when an unknown code arrives (at most every ``refresh_s``), so a device added by an
import is accepted within seconds without a query per reading.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from twin.schema import LAYER_MODELS
from twin.store import SpatialStore

#: live layer id → static layer table whose ``code`` identifies the reporting thing
LIVE_LAYERS: dict[str, str] = {"devices": "devices", "cameras": "cameras"}


@dataclass(frozen=True)
class Thing:
    """A device or camera as the live layer needs it (position CRS84)."""

    layer: str
    code: str
    id: int
    name: str | None
    kind: str | None
    lon: float
    lat: float
    grid_code: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)


class Registry:
    def __init__(self, store: SpatialStore, refresh_s: float = 5.0):
        self.store = store
        self.refresh_s = refresh_s
        self._things: dict[str, dict[str, Thing]] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def load(self) -> None:
        things: dict[str, dict[str, Thing]] = {}
        with self.store.engine.connect() as conn:
            for live, table in LIVE_LAYERS.items():
                tbl: Any = LAYER_MODELS[table].__table__
                cols = [tbl.c.code, tbl.c.id, tbl.c.name, func.ST_X(tbl.c.geom), func.ST_Y(tbl.c.geom),
                        tbl.c.grid_code]
                has_kind = "kind" in tbl.c
                cols.append(tbl.c.kind if has_kind else tbl.c.status)
                cols.append(tbl.c.thresholds if "thresholds" in tbl.c else tbl.c.status)
                rows = conn.execute(select(*cols)).all()
                things[live] = {
                    r[0]: Thing(live, r[0], r[1], r[2], r[6] if has_kind else "camera", float(r[3]), float(r[4]),
                                r[5], dict(r[7]) if isinstance(r[7], dict) else {})
                    for r in rows
                }
        with self._lock:
            self._things = things
            self._loaded_at = time.monotonic()

    def get(self, layer: str, code: str) -> Thing | None:
        thing = self._things.get(layer, {}).get(code)
        if thing is None and time.monotonic() - self._loaded_at > self.refresh_s:
            self.load()
            thing = self._things.get(layer, {}).get(code)
        return thing

    def all(self, layer: str) -> list[Thing]:
        return list(self._things.get(layer, {}).values())
