"""SDF glyph ranges for map labels, rendered from a font on this machine.

MapLibre draws label text from signed-distance-field glyphs that it fetches in ranges of
256 code points (``{fontstack}/{start}-{end}.pbf``). Public styles point at a glyph CDN;
a twin in an operations centre may have no internet, and its labels are Chinese, so the
server renders the ranges itself from a CJK font installed with the system (Debian's
``fonts-wqy-microhei``, or any font named by ``TWIN_GLYPH_FONT``).

The encoding follows the glyphs protobuf that MapLibre reads (the one node-fontnik and
Mapbox's glyph servers write): 24 px glyphs, a 3 px buffer, an 8 px distance radius and a
0.25 cutoff, ``top`` measured from the ascender. No maintained Python package writes this
format; FreeType (``freetype-py``) rasterises and SciPy's Euclidean distance transform
makes the field. A CJK range renders in ~0.2 s (more on a busy machine) and a first view of
the town needs ~27 of them, so ranges are kept twice: in memory, and on disk under
``TWIN_HOME/glyphs/<key>/`` (:class:`GlyphCache`), where the key names the font file (path, size,
mtime) and :data:`RENDERER_VERSION`, so a new font or a change to the renderer never serves stale
glyphs. At server start :func:`prewarm` renders, in a background thread, the ranges that the
town's own labels use (:func:`ranges_for`); a visitor then never waits for a render.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: bump when the bytes a range renders to change (encoding, SDF parameters): it is part of the disk key
RENDERER_VERSION = 1
FONT_SIZE = 24
BUFFER = 3
RADIUS = 8.0
CUTOFF = 0.25
FONTSTACK = "Twin Sans"  # the only font stack the style asks for
CANDIDATE_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
_lock = threading.Lock()
log = logging.getLogger("twin.tiles.glyphs")


class GlyphRangeError(ValueError):
    """A glyph range that is not ``start-end`` with start a multiple of 256 and end = start+255."""


def font_path() -> Path | None:
    """The font the glyphs come from: ``TWIN_GLYPH_FONT`` or the first CJK font installed."""
    env = os.environ.get("TWIN_GLYPH_FONT")
    if env:
        return Path(env) if Path(env).is_file() else None
    for cand in CANDIDATE_FONTS:
        if Path(cand).is_file():
            return Path(cand)
    return None


def parse_range(text: str) -> tuple[int, int]:
    """``"19968-20223"`` → (19968, 20223); anything else is a :class:`GlyphRangeError`."""
    parts = text.split("-")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
        raise GlyphRangeError(f"glyph range must be START-END, got {text[:40]!r}")
    start, end = int(parts[0]), int(parts[1])
    if start % 256 or end != start + 255 or end > 0xFFFF:
        raise GlyphRangeError(f"glyph range must be 256 code points from a multiple of 256 up to 65535, got {start}-{end}")
    return start, end


# --- protobuf writing (the glyphs message is three small nested messages) -----------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _field_varint(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _field_bytes(num: int, data: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(data)) + data


def _sdf(bitmap: np.ndarray) -> np.ndarray:
    """Signed distance field of a coverage bitmap (0–255), padded by BUFFER, as bytes 0–255."""
    from scipy.ndimage import distance_transform_edt

    padded = np.pad(bitmap, BUFFER).astype(np.float64) / 255.0
    inside = padded > 0.5
    if not inside.any():
        return np.zeros(padded.shape, dtype=np.uint8)
    d_out = distance_transform_edt(~inside)
    d_in = distance_transform_edt(inside)
    # sub-pixel edge from the anti-aliased coverage, as TinySDF does
    dist = np.where(inside, -(d_in - 0.5), d_out - 0.5)
    edge = (padded > 0.0) & (padded < 1.0)
    dist = np.where(edge, 0.5 - padded, dist)
    values = 255.0 - 255.0 * (dist / RADIUS + CUTOFF)
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=2)
def _face(path: str):  # noqa: ANN202 - freetype.Face
    import freetype

    face = freetype.Face(path)
    face.set_pixel_sizes(0, FONT_SIZE)
    return face


def _glyph(face, code: int) -> bytes | None:  # noqa: ANN001
    import freetype

    if face.get_char_index(code) == 0:
        return None
    face.load_char(code, freetype.FT_LOAD_RENDER | freetype.FT_LOAD_NO_HINTING)
    g = face.glyph
    bm = g.bitmap
    w, h = bm.width, bm.rows
    ascender = face.size.ascender >> 6
    msg = _field_varint(1, code)
    if w and h:
        pixels = np.array(bm.buffer, dtype=np.uint8).reshape(h, bm.pitch)[:, :w]
        msg += _field_bytes(2, _sdf(pixels).tobytes())
    msg += _field_varint(3, w) + _field_varint(4, h)
    msg += _field_varint(5, _zigzag(g.bitmap_left)) + _field_varint(6, _zigzag(g.bitmap_top - ascender))
    msg += _field_varint(7, (g.advance.x + 32) >> 6)
    return msg


@functools.lru_cache(maxsize=256)
def glyph_range(start: int, end: int, fontstack: str = FONTSTACK, codes: frozenset[int] | None = None) -> bytes:
    """The PBF for code points ``start..end`` (an empty stack when no font is installed); with
    ``codes``, only those of them (a label subset)."""
    stack = _field_bytes(1, fontstack.encode()) + _field_bytes(2, f"{start}-{end}".encode())
    path = font_path()
    wanted = range(start, end + 1) if codes is None else sorted(c for c in codes if start <= c <= end)
    if path is not None:
        with _lock:  # a FreeType face is not thread-safe
            face = _face(str(path))
            for code in wanted:
                g = _glyph(face, code)
                if g is not None:
                    stack += _field_bytes(3, g)
    return _field_bytes(1, stack)


#: MapLibre's ``verticalizedCharacterMap`` (maplibre-gl 5, src/util/verticalize_punctuation.ts):
#: punctuation and its upright form for vertical text. For a label along a line whose text may be
#: written vertically (CJK), MapLibre asks for the glyph of both forms of each character.
_VERTICAL_FROM = '!#$%&()*+,-./:;<=>?@[\\]^_`{|}~¢£¥¦¬¯–—‘’“”…‧₩、。〈〉《》「」『』【】〔〕〖〗！（），－．：；＜＞？［］＿｛｜｝｟｠｡｢｣'
_VERTICAL_TO = '︕＃＄％＆︵︶＊＋︐︲・／︓︔︿＝﹀︖＠﹇＼﹈＾︳｀︷―︸～￠￡￥￤￢￣︲︱﹃﹄﹁﹂︙・￦︑︒︿﹀︽︾﹁﹂﹃﹄︻︼︹︺︗︘︕︵︶︐︲・︓︔︿﹀︖﹇﹈︳︷―︸︵︶︒﹁﹂'
VERTICAL_FORMS = dict(zip(_VERTICAL_FROM, _VERTICAL_TO, strict=True))


def _upright_in_vertical(ch: str) -> bool:
    """Whether ``ch`` stays upright in vertical text — MapLibre's ``allowsVerticalWritingMode``,
    simplified to the scripts a town's names use: CJK ideographs, kana, Hangul, CJK symbols and
    full-width forms. (A wider test only adds a range the labels might not use.)"""
    c = ord(ch)
    return (0x1100 <= c <= 0x11FF or 0x2E80 <= c <= 0x2FDF or 0x3000 <= c <= 0x9FFF or 0xAC00 <= c <= 0xD7AF
            or 0xF900 <= c <= 0xFAFF or 0xFE10 <= c <= 0xFE4F or 0xFF00 <= c <= 0xFFEF or c >= 0x20000)


def vertical_forms(text: str) -> str:
    """The extra characters MapLibre asks glyphs for when it draws ``text`` along a line
    (``symbol-placement: line``): the vertical form of each punctuation mark, if the text may be
    written vertically. Without them a road name with a dash or brackets asks for a range
    (U+FE00–FEFF above all) that no warm-up rendered."""
    if not any(_upright_in_vertical(ch) for ch in text):
        return ""
    return "".join(VERTICAL_FORMS[ch] for ch in text if ch in VERTICAL_FORMS)


def ranges_for(texts: Iterable[str]) -> list[tuple[int, int]]:
    """The glyph ranges (``(start, end)``) that MapLibre asks for to draw ``texts``, in the order
    of the texts (the warm-up renders the first view's labels first)."""
    starts = dict.fromkeys(ord(ch) & ~0xFF for text in texts for ch in text if ord(ch) <= 0xFFFF)
    return [(s, s + 255) for s in starts]


@dataclass(frozen=True)
class LabelGlyphs:
    """The characters the town's labels draw (code points up to U+FFFF, as MapLibre asks for
    them), the ranges they fall in (in the order of the texts) and the key that names the set
    together with the font (:func:`font_key`): another set of characters or another font is
    another key, so a subset cached under a key is always the one it names."""

    key: str
    codes: frozenset[int]
    ranges: tuple[tuple[int, int], ...]

    def in_range(self, start: int, end: int) -> frozenset[int]:
        return frozenset(c for c in self.codes if start <= c <= end)


def label_glyphs(texts: Iterable[str]) -> LabelGlyphs:
    """The :class:`LabelGlyphs` of ``texts`` (read once: ``texts`` may be a generator)."""
    seen: dict[int, None] = {}
    for text in texts:
        for ch in text:
            if ord(ch) <= 0xFFFF:
                seen.setdefault(ord(ch))
    codes = frozenset(seen)
    ranges = tuple((s, s + 255) for s in dict.fromkeys(c & ~0xFF for c in seen))
    digest = hashlib.sha256(f"{font_key()}|{','.join(map(str, sorted(codes)))}".encode()).hexdigest()[:16]
    return LabelGlyphs(digest, codes, ranges)


def font_key(path: Path | None = None) -> str:
    """Names one rendering: the font file (path, size, mtime), the glyph size and the renderer version."""
    path = path if path is not None else font_path()
    if path is None:
        ident = "no-font"
    else:
        st = path.stat()
        ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    raw = f"{ident}|{FONT_SIZE}|{BUFFER}|{RADIUS}|{CUTOFF}|v{RENDERER_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def gzip_bytes(raw: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(raw) + c.flush()


class GlyphCache:
    """Glyph ranges rendered once and kept on disk, in ``directory/<font key>/<stack>/<range>.pbf``.

    Files are written to a temporary name and renamed, so a reader (another worker process)
    never sees half a range. An unwritable directory only costs the disk copy: the range is
    still rendered and served (and kept in memory by :func:`glyph_range`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._pending: dict[Path, threading.Lock] = {}
        self._pending_lock = threading.Lock()

    def path(self, start: int, end: int, fontstack: str = FONTSTACK, labels: LabelGlyphs | None = None) -> Path:
        """Where the range is kept; a label subset in its own folder, ``labels-<key>``."""
        stack = hashlib.sha256(fontstack.encode()).hexdigest()[:12]
        folder = self.directory / font_key() / stack
        if labels is not None:
            folder = folder / f"labels-{labels.key}"
        return folder / f"{start}-{end}.pbf"

    def get(self, start: int, end: int, fontstack: str = FONTSTACK, labels: LabelGlyphs | None = None) -> bytes:
        """The range's PBF (only the labels' characters with ``labels``): from disk when it was
        rendered before, else rendered now and stored."""
        target = self.path(start, end, fontstack, labels)
        try:
            return target.read_bytes()
        except OSError:
            pass
        with self._pending_lock:
            one = self._pending.setdefault(target, threading.Lock())
        with one:  # a range the warm-up is rendering right now is waited for, not rendered twice
            try:
                return target.read_bytes()
            except OSError:
                return self._render(start, end, fontstack, target, labels)

    def get_gzip(self, start: int, end: int, fontstack: str = FONTSTACK, labels: LabelGlyphs | None = None) -> bytes:
        """The range's PBF gzip-compressed (level 9), compressed once and kept next to it on disk:
        a range is ~200 kB of SDF bitmaps (~65 kB gzipped), and compressing 27 of them on every
        first view cost the server more than reading them."""
        target = self.path(start, end, fontstack, labels)
        packed = target.with_name(target.name + ".gz")
        try:
            return packed.read_bytes()
        except OSError:
            pass
        body = gzip_bytes(self.get(start, end, fontstack, labels))
        self._write(packed, body, f"glyph range {start}-{end} (gzip)")
        return body

    def _render(self, start: int, end: int, fontstack: str, target: Path, labels: LabelGlyphs | None) -> bytes:
        body = glyph_range(start, end, fontstack, None if labels is None else labels.in_range(start, end))
        self._write(target, body, f"glyph range {start}-{end}")
        self._write(target.with_name(target.name + ".gz"), gzip_bytes(body), f"glyph range {start}-{end} (gzip)")
        return body

    @staticmethod
    def _write(target: Path, body: bytes, what: str) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("%s not kept on disk: %s", what, exc)

    def prewarm(self, ranges: Iterable[tuple[int, int]], fontstack: str = FONTSTACK,
                stop: threading.Event | None = None, labels: LabelGlyphs | None = None) -> int:
        """Render (or load) every range not on disk yet (the label subsets with ``labels``);
        returns how many were rendered now."""
        rendered = 0
        for start, end in ranges:
            if stop is not None and stop.is_set():
                break
            path = self.path(start, end, fontstack, labels)
            if not path.is_file():
                self.get(start, end, fontstack, labels)
                rendered += 1
            if not path.with_name(path.name + ".gz").is_file():  # ranges rendered by an older twin
                self.get_gzip(start, end, fontstack, labels)
        return rendered


def prewarm(cache: GlyphCache, texts: Iterable[str], fontstack: str = FONTSTACK,
            on_labels: Callable[[LabelGlyphs], None] | None = None) -> threading.Thread:
    """Pre-render, in a daemon thread, the ranges ``texts`` use (Latin first, as a first view needs it):
    the label subsets first (what the style's viewers ask for), then the full ranges (for a client
    with an older key or none). ``on_labels`` receives the :class:`LabelGlyphs` once the texts are
    read (the style names them for the viewer)."""

    def run() -> None:
        try:
            labels = label_glyphs(texts)
            if on_labels is not None:
                on_labels(labels)
            cache.prewarm(labels.ranges, fontstack, labels=labels)
            n = cache.prewarm(labels.ranges, fontstack)
            log.info("glyphs: %d of %d label ranges rendered at start (the rest were on disk)", n, len(labels.ranges))
        except Exception as exc:  # noqa: BLE001 - a warm-up failure only means renders on request
            log.warning("glyph pre-rendering stopped: %s", exc)

    thread = threading.Thread(target=run, name="twin-glyph-prewarm", daemon=True)
    thread.start()
    return thread


__all__ = ["FONTSTACK", "RENDERER_VERSION", "VERTICAL_FORMS", "GlyphCache", "GlyphRangeError", "LabelGlyphs",
           "font_key", "font_path", "glyph_range", "label_glyphs", "parse_range", "prewarm", "ranges_for",
           "vertical_forms"]
