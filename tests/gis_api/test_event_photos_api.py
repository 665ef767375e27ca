"""Photos of events over HTTP, both backends: a field worker attaches a phone photo (multipart), it comes
back as a cleaned JPEG (upright, scaled, no GPS in it); guests may not attach; bad uploads get a 4xx JSON
answer and leave nothing stored."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from layers import event_photos, events_loop


def _new_event(store) -> int:
    with store.engine.begin() as conn:
        return events_loop.open_event(conn, store, lon=120.75, lat=31.65, source="grid", category="garbage",
                                      title="垃圾堆放", by="test")


def _jpeg(w: int = 640, h: int = 480, exif_gps: bool = False, orientation: int | None = None) -> bytes:
    img = Image.new("RGB", (w, h), (200, 40, 40))
    img.paste((20, 20, 220), (0, 0, w // 2, h // 4))  # a blue block top left: shows which way is up
    exif = Image.Exif()
    if exif_gps:
        exif[0x8825] = {1: "N", 2: (31.0, 42.0, 0.0), 3: "E", 4: (120.0, 54.0, 0.0)}  # GPSInfo
        exif[0x010F] = "PhoneMaker"
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


@pytest.fixture
def client(store, client_for):
    from twin.security.accounts import Accounts
    from twin.settings import TwinSettings

    c = client_for(store, anonymous_role="public", secret_key="p" * 40)
    settings = TwinSettings(database_url=store.engine.url.render_as_string(hide_password=False),
                            anonymous_role="public", secret_key="p" * 40)
    try:
        Accounts(store, settings).create_user("photo-field", "Photo-Field-2026", ["field"])
    except Exception:  # noqa: BLE001 - exists from an earlier test
        pass
    tok = c.post("/auth/token", data={"grant_type": "password", "username": "photo-field",
                                      "password": "Photo-Field-2026"}).json()["access_token"]
    c.headers["Authorization"] = f"Bearer {tok}"
    return c


def _count(store) -> int:
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(event_photos.photos_table)).scalar_one()


def test_a_field_worker_attaches_a_photo_and_gets_it_back_clean(store, client):
    eid = _new_event(store)
    r = client.post(f"/events/{eid}/photos", files={"photo": ("IMG_0001.jpg", _jpeg(4000, 3000, exif_gps=True,
                                                                                   orientation=6), "image/jpeg")})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["created_by"] == "photo-field" and meta["content_type"] == "image/jpeg"
    # turned upright (orientation 6: rotate 90°) and scaled to 2048 px on the long side
    assert (meta["width"], meta["height"]) == (1536, 2048)
    listed = client.get(f"/events/{eid}/photos").json()
    assert listed["event_id"] == eid and [p["id"] for p in listed["photos"]] == [meta["id"]]
    img = client.get(meta["url"].split("testserver", 1)[-1])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert "immutable" in img.headers["cache-control"]
    pic = Image.open(io.BytesIO(img.content))
    assert pic.size == (1536, 2048) and pic.format == "JPEG"
    assert not pic.getexif(), "metadata (GPS, maker) must not be served back"
    # the blue block was top left of the sensor; upright (rotated 90° clockwise) it is top right
    r_, g_, b_ = pic.getpixel((pic.width - 50, 50))
    assert b_ > 150 and r_ < 100


def test_a_guest_may_not_attach_and_may_read_public_events(store, client):
    eid = _new_event(store)
    client.post(f"/events/{eid}/photos", files={"photo": ("a.jpg", _jpeg(), "image/jpeg")})
    guest = client.get(f"/events/{eid}/photos", headers={"Authorization": ""})
    assert guest.status_code == 200 and len(guest.json()["photos"]) == 1
    before = _count(store)
    r = client.post(f"/events/{eid}/photos", files={"photo": ("a.jpg", _jpeg(), "image/jpeg")},
                    headers={"Authorization": ""})
    assert r.status_code in (401, 403) and "message" in r.json()
    assert _count(store) == before


@pytest.mark.parametrize(("body", "status", "why"), [
    (b"GIF89a" + b"\0" * 100, 415, "a GIF header"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 415, "an SVG with a script"),
    (b"\xff\xd8\xff\xe0" + b"garbage" * 50, 415, "a broken JPEG"),
    (b"", 400, "nothing"),
])
def test_what_is_not_a_photo_is_refused_and_nothing_stored(store, client, body, status, why):
    eid = _new_event(store)
    before = _count(store)
    r = client.post(f"/events/{eid}/photos", files={"photo": ("x.jpg", body, "image/jpeg")})
    assert r.status_code == status, (why, r.text)
    assert r.json()["message"]
    assert _count(store) == before


def test_too_big_too_many_and_unknown_event(store, client, monkeypatch):
    eid = _new_event(store)
    monkeypatch.setattr(event_photos, "MAX_UPLOAD_BYTES", 10_000)
    r = client.post(f"/events/{eid}/photos", files={"photo": ("big.jpg", _jpeg(800, 800) + b"\0" * 20_000,
                                                                  "image/jpeg")})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    monkeypatch.setattr(event_photos, "MAX_UPLOAD_BYTES", 12 * 1024 * 1024)
    monkeypatch.setattr(event_photos, "MAX_PHOTOS", 2)
    for _ in range(2):
        assert client.post(f"/events/{eid}/photos", files={"photo": ("a.jpg", _jpeg(64, 64), "image/jpeg")}
                           ).status_code == 201
    r = client.post(f"/events/{eid}/photos", files={"photo": ("a.jpg", _jpeg(64, 64), "image/jpeg")})
    assert r.status_code == 400 and "at most 2" in r.json()["message"]
    assert client.post("/events/999999/photos", files={"photo": ("a.jpg", _jpeg(64, 64), "image/jpeg")}
                       ).status_code == 404
    assert client.get(f"/events/{eid}/photos/999999.jpg").status_code == 404


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF"]))
def test_any_bytes_get_a_json_answer_never_a_500(store, client, body, prefix):
    eid = _new_event(store)
    r = client.post(f"/events/{eid}/photos", files={"photo": ("x", prefix + body, "application/octet-stream")})
    assert r.status_code in (201, 400, 415), r.text
    assert r.headers["content-type"].startswith("application/json")


def test_the_openapi_document_describes_the_photo_routes(store, client):
    paths = client.get("/api/openapi.json").json()["paths"]
    post = paths["/events/{event_id}/photos"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"201", "413", "415"} <= set(post["responses"])
    assert "image/jpeg" in paths["/events/{event_id}/photos/{photo_id}.jpg"]["get"]["responses"]["200"]["content"]
    assert paths["/events/{event_id}/photos"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
