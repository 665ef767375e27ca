"""Photos attached to events (a field worker's phone camera): checked, cleaned and stored in the database.

An upload is decoded with Pillow whatever it claims to be; only JPEG, PNG, WebP (and HEIF where Pillow
reads it) are accepted. It is turned upright (EXIF orientation), scaled to at most ``MAX_SIDE`` pixels
and re-encoded as JPEG without any metadata — no GPS position or phone serial leaves with the
picture, and what is served back is an image this server wrote, never the uploaded bytes. Stored in
``event_photos`` (migration 0008) in the same transaction as nothing else: a failed upload leaves no row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import warnings
from typing import Any

import sqlalchemy as sa
from PIL import Image, ImageOps

from twin.errors import FeatureNotFound, InvalidParameter, LimitExceeded, UnsupportedFormat
from twin.store import SpatialStore

MAX_UPLOAD_BYTES = 12 * 1024 * 1024  # a phone photo is 2-6 MB
MAX_PIXELS = 50_000_000  # larger than any phone camera; beyond it a decompression bomb
MAX_SIDE = 2048  # enough to see the pothole; a tenth of the bytes of the original
MAX_PHOTOS = 10  # per event
FORMATS = {"JPEG", "PNG", "WEBP", "MPO", "HEIF"}  # MPO: the JPEG flavour some phones write
QUALITY = 85

metadata = sa.MetaData()
photos_table = sa.Table(
    "event_photos", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def clean_image(raw: bytes) -> tuple[bytes, int, int]:
    """The upload as an upright, metadata-free JPEG of at most MAX_SIDE pixels: (bytes, width, height).
    Raises UnsupportedFormat for anything that is not a readable photo, LimitExceeded for a huge one."""
    if not raw:
        raise InvalidParameter("the photo is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            if img.format not in FORMATS:
                raise UnsupportedFormat(f"a photo must be JPEG, PNG or WebP, not {img.format or 'unknown'}")
            if img.width * img.height > MAX_PIXELS:
                raise LimitExceeded(f"the photo has {img.width}×{img.height} pixels; at most {MAX_PIXELS:,}")
            img.load()
    except (UnsupportedFormat, LimitExceeded):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded("the photo has too many pixels") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for broken files
        raise UnsupportedFormat("the upload is not a readable image (JPEG, PNG or WebP)") from exc
    img = ImageOps.exif_transpose(img)
    if img.mode not in ("RGB", "L"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        img = img.convert("RGBA")
        background.paste(img, mask=img.getchannel("A"))
        img = background
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY, optimize=True)  # no exif= argument: no metadata written
    return out.getvalue(), img.width, img.height


def _meta(row: Any, base: str) -> dict[str, Any]:
    return {"id": row.id, "event_id": row.event_id, "url": f"{base}/events/{row.event_id}/photos/{row.id}.jpg",
            "content_type": row.content_type, "width": row.width, "height": row.height,
            "size_bytes": row.size_bytes, "sha256": row.sha256, "created_by": row.created_by,
            "created_at": row.created_at.replace(tzinfo=dt.UTC).isoformat() if row.created_at.tzinfo is None
            else row.created_at.isoformat()}


def _check_event(conn: sa.Connection, event_id: int) -> None:
    from twin.schema import Event

    if conn.execute(sa.select(Event.__table__.c.id).where(Event.__table__.c.id == event_id)).first() is None:
        raise FeatureNotFound(f"no event {event_id}")


def add_photo(store: SpatialStore, event_id: int, raw: bytes, by: str, base: str) -> dict[str, Any]:
    """Clean and store one photo of an event; its description (with the URL it is served at)."""
    data, width, height = clean_image(raw)
    t = photos_table
    with store.engine.begin() as conn:
        _check_event(conn, event_id)
        count = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.event_id == event_id)).scalar_one()
        if count >= MAX_PHOTOS:
            raise LimitExceeded(f"an event holds at most {MAX_PHOTOS} photos")
        pid = conn.execute(t.insert().values(
            event_id=event_id, content_type="image/jpeg", width=width, height=height, size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(), data=data, created_by=by,
            created_at=dt.datetime.now(dt.UTC)).returning(t.c.id)).scalar_one()
        row = conn.execute(sa.select(*[c for c in t.c if c.name != "data"]).where(t.c.id == pid)).one()
    return _meta(row, base)


def list_photos(store: SpatialStore, event_id: int, base: str) -> list[dict[str, Any]]:
    t = photos_table
    with store.engine.connect() as conn:
        _check_event(conn, event_id)
        rows = conn.execute(sa.select(*[c for c in t.c if c.name != "data"])
                            .where(t.c.event_id == event_id).order_by(t.c.id)).all()
    return [_meta(r, base) for r in rows]


def photo_bytes(store: SpatialStore, event_id: int, photo_id: int) -> tuple[bytes, str, str]:
    """(JPEG bytes, content type, sha256) of one photo of one event."""
    t = photos_table
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.c.data, t.c.content_type, t.c.sha256)
                           .where(t.c.event_id == event_id, t.c.id == photo_id)).first()
    if row is None:
        raise FeatureNotFound(f"no photo {photo_id} of event {event_id}")
    return bytes(row.data), row.content_type, row.sha256


__all__ = ["MAX_PHOTOS", "MAX_UPLOAD_BYTES", "add_photo", "clean_image", "list_photos", "photo_bytes", "photos_table"]
