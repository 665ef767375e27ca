"""Analyses over the twin's layers: pure functions that take geometries / rows and return results.

Nothing here knows HTTP; ``gis_api.routers.analysis*``, ``locate`` and ``processes`` parse
requests, call these and serialise. Distances and areas are computed in a local metric
frame (:mod:`twin.analysis.metric`), never in degrees. Module map: ``buffer``, ``section``
(+ ``ground``, ``section_svg``), ``clearance``, ``network`` (+ ``network_service``),
``overlap``, ``dust`` (+ ``dust_service``), ``locate``, ``epanet``, ``swmm``; ``inputs``
checks what users send, ``source`` reads candidates through the store.
"""

from twin.analysis.buffer import (
    BufferHit,
    BufferResult,
    buffer_analysis,
    buffer_polygon,
    buffer_result,
    distances_m,
    search_bbox,
)
from twin.analysis.clearance import check_clearance, clearance_table, section_clearance
from twin.analysis.dust import DustConfig, DustFactor, heat_grid, score_monitors
from twin.analysis.inputs import (
    check_distance,
    check_lonlat,
    parse_geometry,
    parse_point,
    plain_point_xy,
)
from twin.analysis.locate import grids_at, locate_grid, nearest_features, nearest_in
from twin.analysis.metric import LocalFrame, area_frame_for, frame_at, frame_for
from twin.analysis.network import UtilityNetwork, build_networks, pipe_statistics
from twin.analysis.overlap import overlap_analysis
from twin.analysis.section import CrossSection, PipeCrossing, cross_section
from twin.analysis.source import (
    FeatureSet,
    feature_by_ref,
    features_in_bbox,
    features_near_point,
    features_within,
)

__all__ = [
    "BufferHit", "BufferResult", "CrossSection", "DustConfig", "DustFactor", "FeatureSet", "LocalFrame",
    "PipeCrossing", "UtilityNetwork", "area_frame_for", "buffer_analysis", "buffer_polygon", "buffer_result", "build_networks",
    "check_clearance", "check_distance", "check_lonlat", "clearance_table", "cross_section", "distances_m",
    "feature_by_ref", "features_in_bbox", "features_near_point", "features_within", "frame_at", "frame_for", "grids_at", "heat_grid", "locate_grid",
    "nearest_features", "nearest_in", "overlap_analysis", "parse_geometry", "parse_point", "pipe_statistics", "plain_point_xy",
    "score_monitors", "search_bbox", "section_clearance",
]
