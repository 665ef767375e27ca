"""View-cone geometry and building occlusion (pure geometry, no database)."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, box

from layers.viewshed import (
    LocalFrame,
    Obstacle,
    ViewCone,
    line_of_sight,
    occluders,
    visible_area,
)


def test_cone_polygon_is_the_sector_of_the_given_heading_width_and_range():
    cone = ViewCone(0, 0, heading_deg=90, fov_deg=60, range_m=100)
    poly = cone.polygon()
    assert math.isclose(poly.area, math.pi * 100**2 * 60 / 360, rel_tol=0.01)
    assert poly.contains(Point(50, 0))  # due east: on the heading
    assert not poly.contains(Point(-50, 0))  # behind
    assert not poly.contains(Point(0, 50))  # due north: 90° off a 60° cone
    assert poly.contains(Point(50 * math.cos(math.radians(25)), 50 * math.sin(math.radians(25))))
    assert not cone.contains(101, 0) and cone.contains(99.9, 0)


def test_full_circle_camera_sees_every_direction():
    cone = ViewCone(10, 10, heading_deg=0, fov_deg=360, range_m=50)
    assert math.isclose(cone.polygon().area, math.pi * 50**2, rel_tol=0.01)
    assert cone.contains(10, -30) and cone.contains(-30, 10) and not cone.contains(10, 70)


def test_heading_wraps_around_north():
    cone = ViewCone(0, 0, heading_deg=350, fov_deg=40, range_m=100)
    assert cone.contains(math.sin(math.radians(5)) * 50, math.cos(math.radians(5)) * 50)
    assert cone.contains(math.sin(math.radians(-25)) * 50, math.cos(math.radians(-25)) * 50)
    assert not cone.contains(math.sin(math.radians(15)) * 50, math.cos(math.radians(15)) * 50)


def test_local_frame_distances_match_the_ellipsoid():
    from pyproj import Geod

    frame = LocalFrame.around(120.75, 31.65)
    lon, lat, _ = Geod(ellps="GRS80").fwd(120.752, 31.651, 37.0, 180.0)
    a = frame.to_local(Point(120.752, 31.651))
    b = frame.to_local(Point(lon, lat))
    assert math.isclose(a.distance(b), 180.0, abs_tol=0.01)
    assert math.isclose(math.degrees(math.atan2(b.x - a.x, b.y - a.y)), 37.0, abs_tol=0.05)


def test_a_tall_building_hides_what_is_behind_it_and_a_low_one_does_not():
    tall = Obstacle(box(-5, 20, 5, 30), 20.0)
    low = Obstacle(box(-5, 20, 5, 30), 2.0)
    eye, target = (0, 0, 6.0), (0, 60, 0.0)
    assert not line_of_sight(eye, target, [tall])
    # a 2 m wall 30 m out from a 6 m eye hides the ground only up to 30·6/4 = 45 m
    assert line_of_sight(eye, target, [low])
    assert not line_of_sight(eye, (0, 40, 0.0), [low])


def test_the_building_a_camera_is_mounted_on_does_not_hide_its_view():
    wall = Obstacle(box(-10, -10, 0, 10), 30.0)  # camera on its east face
    assert occluders(0.2, 0, [wall]) == []
    cone = ViewCone(0.2, 0, heading_deg=90, fov_deg=90, range_m=50)
    assert math.isclose(visible_area(cone, 6.0, 0.0, occluders(0.2, 0, [wall])).area, cone.polygon().area)


buildings = st.lists(
    st.tuples(st.floats(-80, 80), st.floats(-80, 80), st.floats(2, 25), st.floats(2, 25), st.floats(1, 40)),
    min_size=0, max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(
    heading=st.floats(0, 359.9), fov=st.floats(10, 360), rng=st.floats(20, 120), eye=st.floats(2, 20),
    target_h=st.floats(0, 1.9), blds=buildings,
    points=st.lists(st.tuples(st.floats(-120, 120), st.floats(-120, 120)), min_size=5, max_size=25),
)
def test_visible_polygon_agrees_with_the_sight_line_test(heading, fov, rng, eye, target_h, blds, points):
    """Any buildings, any camera, any target: a point is inside the occluded cone polygon exactly when
    it is in the cone and the sight line reaches it (away from edges, where rounding decides)."""
    cone = ViewCone(0, 0, heading, fov, rng)
    obstacles = occluders(0, 0, [Obstacle(box(x, y, x + w, y + d), h) for x, y, w, d, h in blds])
    visible = visible_area(cone, eye, target_h, obstacles)
    poly = cone.polygon()
    edges = visible.boundary.union(poly.boundary)
    for x, y in points:
        p = Point(x, y)
        if edges.distance(p) < 0.05 or any(o.footprint.boundary.distance(p) < 0.05 for o in obstacles):
            continue
        expected = poly.contains(p) and line_of_sight((0, 0, eye), (x, y, target_h), obstacles)
        assert visible.contains(p) == expected, (x, y)
