"""Latest state of every live feature in this worker's memory (GeoJSON features by layer and id).

Every worker keeps its copy current from the hub (:meth:`LiveState.apply` is a hub
listener), so snapshots for new subscribers and ``GET /live/{layer}`` are answered from
memory. A change older than what is held (by ``properties.ts``) is ignored, so the
echo of a worker's own change and out-of-order deliveries do no harm.

Status from heartbeats: a device is ``online`` while its last reading or heartbeat is
younger than ``offline_after_s``, then ``offline`` (never seen: ``offline`` with
``last_seen`` null).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from typing import Any

from layers.hub import BBox, Change, feature_bounds
from layers.readings import Reading
from layers.registry import Registry, Thing


def _iso(t: dt.datetime | None) -> str | None:
    """Fixed-width UTC (microseconds always written) so strings order as times do."""
    if t is None:
        return None
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"  # strftime: 3× the time


def _parse(t: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00")) if t else None


def thing_feature(thing: Thing, *, ts: dt.datetime | None, values: dict[str, Any], last_seen: dt.datetime | None,
                  status: str, lon: float | None = None, lat: float | None = None) -> dict[str, Any]:
    """The live GeoJSON feature of a device or camera (id = its code)."""
    breaches = sorted(m for m, limit in thing.thresholds.items()
                      if isinstance(values.get(m), float) and values[m] >= limit)
    return {
        "type": "Feature",
        "id": thing.code,
        "geometry": {"type": "Point", "coordinates": [lon if lon is not None else thing.lon,
                                                      lat if lat is not None else thing.lat]},
        "properties": {
            "code": thing.code, "name": thing.name, "kind": thing.kind, "grid_code": thing.grid_code,
            "static_id": thing.id, "ts": _iso(ts), "values": values, "status": status,
            "last_seen": _iso(last_seen), "breaches": breaches,
        },
    }


class LiveState:
    def __init__(self, offline_after_s: float):
        self.offline_after = dt.timedelta(seconds=offline_after_s)
        self._features: dict[str, dict[str, dict[str, Any]]] = {}
        self._things: dict[tuple[str, str], Thing] = {}
        self._lock = threading.Lock()

    def seed(self, registry: Registry, rows: list[dict[str, Any]], now: dt.datetime) -> None:
        """All registered things, with their stored latest reading where there is one."""
        stored = {(r["layer"], r["device_code"]): r for r in rows}
        with self._lock:
            for layer in ("devices", "cameras"):
                layer_feats = self._features.setdefault(layer, {})
                for thing in registry.all(layer):
                    self._things[(layer, thing.code)] = thing
                    row = stored.get((layer, thing.code))
                    if row is None:
                        layer_feats[thing.code] = thing_feature(thing, ts=None, values={}, last_seen=None,
                                                                status="offline")
                    else:
                        online = now - row["last_seen"] < self.offline_after
                        layer_feats[thing.code] = thing_feature(
                            thing, ts=row["ts"], values=row["values"] or {}, last_seen=row["last_seen"],
                            status="online" if online else "offline", lon=row["lon"], lat=row["lat"])

    def update(self, thing: Thing, reading: Reading, seen: dt.datetime) -> Change:
        """The change a reading makes (applied here at once; the hub's echo is then a no-op)."""
        with self._lock:
            self._things[(thing.layer, thing.code)] = thing
            old = self._features.get(thing.layer, {}).get(thing.code)
        values = reading.values
        lon, lat = reading.lon, reading.lat
        if old is not None:
            if lon is None:
                lon, lat = old["geometry"]["coordinates"][:2]
            old_ts = _parse(old["properties"]["ts"])
            if not values:  # a heartbeat keeps the last values
                values = old["properties"]["values"]
            if old_ts is not None and old_ts > reading.ts:  # late reading: history only, state keeps the newer
                feat = {**old, "properties": {**old["properties"], "last_seen": _iso(seen), "status": "online"}}
                change = {"op": "update", "layer": thing.layer, "feature": feat}
                self.apply([change], force=True)
                return change
        feat = thing_feature(thing, ts=reading.ts, values=values, last_seen=seen, status="online", lon=lon, lat=lat)
        change = {"op": "update", "layer": thing.layer, "feature": feat}
        self.apply([change])
        return change

    def apply(self, changes: list[Change], force: bool = False) -> None:
        """Hub listener: keep the newest state of every feature."""
        with self._lock:
            for ch in changes:
                layer_feats = self._features.setdefault(ch["layer"], {})
                fid = str(ch["feature"].get("id"))
                if ch["op"] == "remove":
                    layer_feats.pop(fid, None)
                    continue
                new = ch["feature"]
                old = layer_feats.get(fid)
                if old is not None and not force:
                    o, n = old.get("properties", {}), new.get("properties", {})
                    if (o.get("ts") or "") > (n.get("ts") or "") or (
                        o.get("ts") == n.get("ts") and (o.get("last_seen") or "") > (n.get("last_seen") or "")
                    ):
                        continue
                layer_feats[fid] = new

    def expire(self, now: dt.datetime) -> list[Change]:
        """Changes that take silent devices offline (and apply them)."""
        out = []
        limit = _iso(now - self.offline_after) or ""
        with self._lock:
            for layer in ("devices", "cameras"):
                for fid, feat in self._features.get(layer, {}).items():
                    p = feat["properties"]
                    if p.get("status") == "online" and (p.get("last_seen") or "") < limit:
                        new = {**feat, "properties": {**p, "status": "offline"}}
                        self._features[layer][fid] = new
                        out.append({"op": "update", "layer": layer, "feature": new})
        return out

    def features(self, layer: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._features.get(layer, {}).values())

    def get(self, layer: str, fid: str) -> dict[str, Any] | None:
        with self._lock:
            return self._features.get(layer, {}).get(fid)

    def snapshot(self, layers: Iterable[str] | None, bbox: BBox | None) -> list[Change]:
        with self._lock:
            wanted = list(layers) if layers else list(self._features)
            out = []
            for layer in wanted:
                for feat in self._features.get(layer, {}).values():
                    if bbox is not None:
                        b = feature_bounds(feat)
                        if b is None or b[0] > bbox[2] or b[2] < bbox[0] or b[1] > bbox[3] or b[3] < bbox[1]:
                            continue
                    out.append({"op": "add", "layer": layer, "feature": feat})
            return out
