"""Reading the features an analysis needs, through the store (both backends alike).

The store's bbox clause uses each backend's spatial index; the exact spatial test is
then done by the analysis in a local metric frame. Reads are capped so no request can
pull a whole province into memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.catalog import get_layer
from twin.dialect import BBox
from twin.errors import InvalidParameter, LimitExceeded
from twin.store import FeatureQuery, SpatialStore


@dataclass
class FeatureSet:
    """Features of one layer: ids, property dicts and lon/lat shapely geometries (aligned)."""

    layer: str
    ids: list[int] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)
    geometries: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: Sequence[int] | np.ndarray) -> FeatureSet:
        idx = [int(i) for i in idx]
        return FeatureSet(self.layer, [self.ids[i] for i in idx], [self.properties[i] for i in idx],
                          self.geometries[idx] if idx else np.array([], dtype=object))


def features_in_bbox(store: SpatialStore, layer: str, bbox: BBox, *, cap: int,
                     filters: dict[str, str] | None = None, properties: Sequence[str] | None = None) -> FeatureSet:
    """Every feature of ``layer`` whose geometry meets the lon/lat ``bbox``; at most ``cap``
    (:class:`LimitExceeded` beyond, so a result is never silently cut short)."""
    spec = get_layer(layer)
    page = store.query(FeatureQuery(layer=spec.id, bbox=bbox, limit=cap + 1, filters=filters or {},
                                    properties=properties))
    if len(page.ids) > cap:
        raise LimitExceeded(
            f"more than {cap} {spec.id} features lie in the area; narrow the area or the distance",
            detail={"layer": spec.id, "max_features": cap},
        )
    return FeatureSet(spec.id, page.ids, page.properties, page.geometries)


def feature_by_ref(store: SpatialStore, layer: str, *, id: int | None = None, code: str | None = None) -> FeatureSet:
    """One feature named by ``id`` or business ``code`` (``FeatureNotFound`` → 404 otherwise)."""
    from twin.errors import FeatureNotFound

    spec = get_layer(layer)
    if id is not None:
        page = store.get(spec.id, int(id))
    elif code is not None:
        page = store.query(FeatureQuery(layer=spec.id, filters={"code": str(code)}, limit=1))
        if not page.ids:
            raise FeatureNotFound(f"no feature with code {code!r} in layer {spec.id!r}")
    else:
        raise InvalidParameter("a feature reference needs 'id' or 'code'")
    return FeatureSet(spec.id, page.ids, page.properties, page.geometries)


__all__ = ["FeatureSet", "feature_by_ref", "features_in_bbox"]
