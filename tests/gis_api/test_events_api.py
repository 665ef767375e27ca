"""The closed loop over HTTP: legal steps accepted and kept, illegal ones refused with JSON, both backends."""

from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layers import events_loop

TOKEN = "s3cret-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _new_event(store, lon=120.75, lat=31.65) -> int:
    with store.engine.begin() as conn:
        return events_loop.open_event(conn, store, lon=lon, lat=lat, source="grid", category="garbage",
                                      title="垃圾堆放", by="test")


@pytest.fixture
def client(store, client_for):
    return client_for(store, admin_token=TOKEN)


def test_the_main_path_is_accepted_and_every_step_kept(store, client):
    eid = _new_event(store)
    for to, by in [("verified", "grid-07"), ("dispatched", "centre"), ("handled", "sanitation-3"),
                   ("closed", "centre")]:
        r = client.post(f"/events/{eid}/transitions", json={"to": to, "by": by, "note": f"{to} ok"}, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["to"] == to
    h = client.get(f"/events/{eid}/history").json()
    assert h["status"] == "closed" and h["allowed_next"] == []
    assert [(s["from"], s["to"]) for s in h["history"]] == [
        (None, "reported"), ("reported", "verified"), ("verified", "dispatched"), ("dispatched", "handled"),
        ("handled", "closed")]
    assert [s["by"] for s in h["history"]][1:] == ["grid-07", "centre", "sanitation-3", "centre"]
    feat = client.get(f"/collections/events/items/{eid}").json()
    assert feat["properties"]["status"] == "closed" and feat["properties"]["closed_at"]


def test_an_illegal_step_is_409_json_and_changes_nothing(store, client):
    eid = _new_event(store)
    r = client.post(f"/events/{eid}/transitions", json={"to": "handled", "by": "x"}, headers=AUTH)
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "illegal_transition" and body["detail"]["allowed"] == ["verified", "closed"]
    assert client.get(f"/events/{eid}/history").json()["status"] == "reported"
    assert len(client.get(f"/events/{eid}/history").json()["history"]) == 1


def test_turning_back_needs_a_note(store, client):
    eid = _new_event(store)
    r = client.post(f"/events/{eid}/transitions", json={"to": "closed", "by": "centre"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["code"] == "note_required"
    r = client.post(f"/events/{eid}/transitions", json={"to": "closed", "by": "centre", "note": "不予立案：重复上报"},
                    headers=AUTH)
    assert r.status_code == 201


@pytest.mark.parametrize("body", [{"to": "done", "by": "x"}, {"to": "verified"}, {"to": "verified", "by": ""},
                                  {"by": "x"}, {"to": "verified", "by": "x" * 65}, "not json"])
def test_malformed_requests_are_400_json(store, client, body):
    eid = _new_event(store)
    kw = {"content": body, "headers": {**AUTH, "content-type": "application/json"}} if isinstance(body, str) \
        else {"json": body, "headers": AUTH}
    r = client.post(f"/events/{eid}/transitions", **kw)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"code", "message", "detail"}


def test_steps_need_a_role_that_may_write_events_and_unknown_events_are_404(store, client, client_for):
    eid = _new_event(store)
    guest = client_for(store, admin_token=TOKEN, anonymous_role="public")  # the product's default
    assert guest.post(f"/events/{eid}/transitions", json={"to": "verified", "by": "x"}).status_code == 401
    assert client.post(f"/events/{eid}/transitions", json={"to": "verified", "by": "x"},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/events/999999/transitions", json={"to": "verified", "by": "x"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["code"] == "feature_not_found"
    assert client.get("/events/999999/history").status_code == 404


def test_reporting_an_event_attributes_it_to_its_unit_grid(town_store, client_for):
    from twin.store import FeatureQuery

    c = client_for(town_store, admin_token=TOKEN)
    grid = town_store.query(FeatureQuery("grids", filters={"level": "unit"}, limit=1))
    inside = grid.geometries[0].representative_point()
    r = c.post("/events", json={"lon": inside.x, "lat": inside.y, "category": "garbage", "title": "垃圾堆放",
                                "by": "grid-07"}, headers=AUTH)
    assert r.status_code == 201, r.text
    feat = r.json()
    try:
        assert feat["properties"]["grid_code"] == grid.properties[0]["code"]
        assert feat["properties"]["status"] == "reported"
        h = c.get(f"/events/{feat['id']}/history").json()
        assert [s["to"] for s in h["history"]] == ["reported"]
    finally:
        from sqlalchemy import delete

        from twin.schema import Event

        with town_store.engine.begin() as conn:
            conn.execute(delete(Event.__table__).where(Event.__table__.c.id == feat["id"]))


requests = st.lists(st.tuples(st.sampled_from(events_loop.STATUSES), st.booleans()), max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=requests)
def test_any_sequence_of_requests_accepts_exactly_the_legal_steps(store, client, steps):
    """Whatever steps are asked for, in any order: only legal ones are accepted, and the history is the
    report followed by exactly the accepted steps."""
    eid = _new_event(store)
    status, accepted = "reported", [(None, "reported")]
    for to, with_note in steps:
        body = {"to": to, "by": "prop", **({"note": "why"} if with_note else {})}
        r = client.post(f"/events/{eid}/transitions", json=body, headers=AUTH)
        step = events_loop.STEPS[status].get(to)
        legal = step is not None and (with_note or not step.note_required)
        if legal:
            assert r.status_code == 201, r.text
            accepted.append((status, to))
            status = to
        else:
            assert r.status_code in (409, 422), r.text
            assert set(r.json()) == {"code", "message", "detail"}
    h = client.get(f"/events/{eid}/history").json()
    assert h["status"] == status
    assert [(s["from"], s["to"]) for s in h["history"]] == accepted


def test_sample_events_come_with_the_steps_that_led_to_their_status(town_client, town_store):
    from twin.store import FeatureQuery

    page = town_store.query(FeatureQuery("events", limit=30))
    for fid, props in zip(page.ids, page.properties, strict=True):
        h = town_client.get(f"/events/{fid}/history").json()
        path = [s["to"] for s in h["history"]]
        assert path == list(events_loop.STATUSES[: events_loop.STATUSES.index(props["status"]) + 1])
        times = [datetime.fromisoformat(s["at"]) for s in h["history"]]
        assert times == sorted(times)
