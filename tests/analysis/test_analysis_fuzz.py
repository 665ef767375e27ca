"""Random request bodies and query strings never make an analysis endpoint answer 5xx (both backends)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("TWIN_FUZZ_EXAMPLES", "120"))  # more for a longer hunt
NUM = st.one_of(st.integers(-10**10, 10**10), st.floats(allow_nan=False, allow_infinity=False), st.just(-5),
                st.just(1e9), st.just(0))
COORD = st.lists(st.one_of(st.floats(-200, 200), st.integers(-200, 200)), min_size=0, max_size=3)
GEOM = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["Point", "LineString", "Polygon", "MultiPolygon", "Nope"]),
                           "coordinates": st.one_of(COORD, st.lists(COORD, max_size=5),
                                                    st.lists(st.lists(COORD, max_size=5), max_size=2))}),
    st.none(), st.text(max_size=5), st.integers())
SCALAR = st.one_of(st.none(), st.booleans(), NUM, st.text(max_size=8))
FEATURE = st.one_of(st.none(), st.fixed_dictionaries({"layer": st.sampled_from(["pipelines", "buildings", "nope"]),
                                                      "id": st.one_of(st.integers(-5, 10**6), st.none()),
                                                      "code": st.one_of(st.none(), st.text(max_size=10))}))
BODY = st.fixed_dictionaries({}, optional={
    "geometry": GEOM, "line": GEOM, "feature": FEATURE, "distance": st.one_of(NUM, SCALAR), "layers": st.one_of(
        st.lists(st.sampled_from(["buildings", "pipelines", "nope", ""]), max_size=4), SCALAR),
    "point": st.one_of(COORD, SCALAR), "direction": st.sampled_from(["upstream", "downstream", "x"]),
    "utility": st.one_of(st.sampled_from(["water_supply", "sewage", "gas", "nope"]), SCALAR),
    "broken_valves": st.one_of(st.lists(st.text(max_size=8), max_size=3), SCALAR),
    "max_snap_m": st.one_of(NUM, SCALAR), "step_m": st.one_of(NUM, SCALAR), "service_m": st.one_of(NUM, SCALAR),
    "bbox": st.one_of(st.lists(NUM, max_size=5), SCALAR), "pipes": st.one_of(st.lists(st.text(max_size=10), max_size=3), SCALAR),
    "overrides": st.one_of(st.dictionaries(st.sampled_from(["horizontal_m", "vertical_m", "x"]),
                                           st.dictionaries(st.text(max_size=12), SCALAR, max_size=2), max_size=2),
                           SCALAR),
})
PATHS = ["/analysis/buffer", "/analysis/cross-section", "/analysis/clearance", "/analysis/overlap", "/analysis/trace",
         "/analysis/valve-isolation", "/processes/buffer/execution"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), body=BODY)
def test_post_bodies_never_5xx(town_client, path, body):
    if path.startswith("/processes"):
        body = {"inputs": body}
    r = town_client.post(path, json=body)
    assert r.status_code < 500, (path, body, r.text[:300])
    if r.status_code >= 400:
        assert {"code", "message", "detail"} <= set(r.json())


QUERY = st.dictionaries(st.sampled_from(["q", "lon", "lat", "n", "layer", "kind", "max_distance", "point", "bbox",
                                         "utility", "cell_m", "min_score", "limit", "layers"]),
                        st.one_of(st.text(max_size=12), NUM.map(str)), max_size=5)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/search", "/nearest", "/locate/grid", "/analysis/flow-direction",
                             "/analysis/pipe-statistics", "/analysis/dust-heat"]), params=QUERY)
def test_get_queries_never_5xx(town_client, path, params):
    r = town_client.get(path, params=params)
    assert r.status_code < 500, (path, params, r.text[:300])
