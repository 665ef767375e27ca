"""Fuzzing the CQL2 parsers through the HTTP API on both backends: zero 500s.

Filters are grammar-shaped (properties real and made up; literals including huge
integers, nan/inf, Unicode, dates and geometries with wild coordinates; deep nesting;
long chains; random mutations), so they reach the compiler and the database, not only
the tokenizer. Every answer must be a 200 FeatureCollection or a 400 JSON error; a 500,
a RecursionError or a database error fails the test. ``derandomize`` keeps CI
reproducible; the examples are few enough for the default run (about half a minute).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gis_api.cql_strategies import LAYERS, json_filters, text_filters
from tests.gis_api.cql_town import BUILDINGS, serve

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def client(store):
    yield from serve(store)


def _check(client, layer: str, text: str, lang: str) -> None:
    text = text[:21_000]  # just over the length cap ...
    while len(quote(text)) > 60_000:  # ... and short enough for httpx's URL limit once encoded
        text = text[: len(text) * 9 // 10]
    r = client.get(f"/collections/{layer}/items", params={"filter": text, "filter-lang": lang, "limit": 5})
    assert r.status_code in (200, 400), (r.status_code, r.text[:500], text[:300])
    body = r.json()
    if r.status_code == 400:
        assert set(body) == {"code", "message", "detail"} and body["code"] == "invalid_parameter", body
    else:
        assert body["type"] == "FeatureCollection" and body["numberMatched"] >= body["numberReturned"]


@FUZZ
@given(layer=st.sampled_from(LAYERS), text=text_filters)
def test_cql2_text_never_answers_500(client, layer, text):
    _check(client, layer, text, "cql2-text")


@FUZZ
@given(layer=st.sampled_from(LAYERS), text=json_filters)
def test_cql2_json_never_answers_500(client, layer, text):
    _check(client, layer, text, "cql2-json")


def test_the_data_survives_the_fuzzing(client):
    fc = client.get("/collections/buildings/items", params={"limit": 1}).json()
    assert fc["numberMatched"] == len(BUILDINGS)
