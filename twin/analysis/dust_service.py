"""The dust heat map of one store: its inputs (readings, muck trucks, configuration) and a
cached result that is recomputed when they or the monitors, roads or sites change.

PM10 readings arrive from outside the core: the live-layer ingest (or anyone) calls
:meth:`DustHeatService.set_inputs`, or sets :attr:`reading_provider` to a function that
returns the latest ``{device code: pm10}``; the result's version moves with them, so the
heat tiles (``/raster/dust-heat/…``) and ``/analysis/dust-heat`` change the moment a
reading does.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from twin.analysis.dust import (
    DustConfig,
    HeatGrid,
    Monitor,
    MonitorScore,
    heat_at,
    heat_grid,
    score_monitors,
)
from twin.analysis.metric import metres_to_degrees_box
from twin.analysis.source import FeatureSet, VersionClock, features_in_bbox
from twin.errors import InvalidParameter
from twin.store import SpatialStore

WORLD = (-180.0, -90.0, 180.0, 90.0)


@dataclass
class DustState:
    version: str
    monitors: list[MonitorScore]
    extent: tuple[float, float, float, float] | None


class DustHeatService:
    def __init__(self, store: SpatialStore, config: DustConfig | None = None, cap: int = 200_000):
        self.store = store
        self.clock = VersionClock(store)
        self.config = config or DustConfig()
        self.cap = cap
        self.readings: dict[str, float] = {}
        self.trucks: list[tuple[float, float]] = []
        self.reading_provider: Callable[[], Mapping[str, float]] | None = None
        self._lock = threading.Lock()
        self._state: DustState | None = None

    def set_inputs(self, readings: Mapping[str, float] | None = None,
                   trucks: Sequence[Sequence[float]] | None = None, replace: bool = False) -> None:
        """Update PM10 readings (merged unless ``replace``) and/or the muck-truck positions (lon, lat)."""
        with self._lock:
            if readings is not None:
                clean = {}
                for code, v in readings.items():
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= float(v) < 100_000):
                        raise InvalidParameter(f"PM10 reading of {code!r} must be a number in µg/m³, not {v!r}")
                    clean[str(code)] = float(v)
                self.readings = clean if replace else {**self.readings, **clean}
            if trucks is not None:
                pts = []
                for t in trucks:
                    if len(t) != 2 or not all(isinstance(c, (int, float)) for c in t) or abs(t[0]) > 180 or abs(t[1]) > 90:
                        raise InvalidParameter(f"a truck position must be [lon, lat], not {t!r}")
                    pts.append((float(t[0]), float(t[1])))
                self.trucks = pts

    def _readings(self) -> dict[str, float]:
        out = dict(self.reading_provider() if self.reading_provider else {})
        out.update(self.readings)
        return out

    def version(self) -> str:
        v = self.clock.get()
        key = orjson.dumps([sorted(self._readings().items()), self.trucks, repr(self.config),
                            [v.get(n, 0) for n in ("devices", "roads", "construction_sites")]])
        return hashlib.blake2b(key, digest_size=10).hexdigest()

    def state(self) -> DustState:
        version = self.version()
        with self._lock:
            if self._state is not None and self._state.version == version:
                return self._state
        devs = features_in_bbox(self.store, "devices", WORLD, cap=self.cap, filters={"kind": "dust"})
        readings = self._readings()
        monitors = [Monitor(p["code"], g.x, g.y, readings.get(p["code"]), (p.get("thresholds") or {}).get("pm10"))
                    for p, g in zip(devs.properties, devs.geometries, strict=True)]
        extent = None
        if monitors:
            reach = 3 * self.config.influence_m
            lons = [m.lon for m in monitors]
            lats = [m.lat for m in monitors]
            dlon, dlat = metres_to_degrees_box(sum(lons) / len(lons), max(map(abs, lats)), reach)
            extent = (min(lons) - dlon, min(lats) - dlat, max(lons) + dlon, max(lats) + dlat)
            box = (extent[0] - dlon, extent[1] - dlat, extent[2] + dlon, extent[3] + dlat)
            roads = features_in_bbox(self.store, "roads", box, cap=self.cap)
            sites = features_in_bbox(self.store, "construction_sites", box, cap=self.cap)
        else:
            roads, sites = FeatureSet("roads"), FeatureSet("construction_sites")
        scored = score_monitors(monitors, roads, sites, self.trucks, self.config)
        state = DustState(version, scored, extent)
        with self._lock:
            self._state = state
        return state

    def grid(self, bbox: tuple[float, float, float, float] | None = None, cell_m: float | None = None,
             max_cells: int = 4_000_000) -> HeatGrid | None:
        st = self.state()
        box = bbox or st.extent
        if box is None:
            return None
        cfg = self.config if cell_m is None else DustConfig(**{**self.config.__dict__, "cell_m": cell_m})
        return heat_grid(box, st.monitors, cfg, max_cells=max_cells)

    def heat_at(self, lon, lat):  # noqa: ANN001, ANN201 - numpy arrays
        return heat_at(lon, lat, self.state().monitors, self.config)


__all__ = ["DustHeatService", "DustState"]
