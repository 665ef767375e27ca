"""Analyses over the twin's layers: pure functions that take geometries / rows and return results.

Nothing here knows HTTP; ``gis_api.routers.analysis`` and ``gis_api.routers.locate``
parse requests, call these and serialise. Distances and areas are computed in a local
metric frame (:mod:`twin.analysis.metric`), never in degrees.
"""

from twin.analysis.buffer import (
    BufferHit,
    BufferResult,
    buffer_analysis,
    buffer_polygon,
    distances_m,
    search_bbox,
)
from twin.analysis.inputs import check_distance, check_lonlat, parse_geometry, parse_point
from twin.analysis.metric import LocalFrame, frame_at, frame_for
from twin.analysis.source import FeatureSet, feature_by_ref, features_in_bbox

__all__ = [
    "BufferHit", "BufferResult", "FeatureSet", "LocalFrame", "buffer_analysis", "buffer_polygon",
    "check_distance", "check_lonlat", "distances_m", "feature_by_ref", "features_in_bbox", "frame_at",
    "frame_for", "parse_geometry", "parse_point", "search_bbox",
]
