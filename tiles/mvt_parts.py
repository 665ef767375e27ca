"""Splitting an MVT into its layers, so a composite tile can be re-rendered one layer at a time.

An MVT is a protobuf ``Tile`` whose only field is ``repeated Layer layers = 3``: the tile is
the concatenation of its encoded layer messages, in any order. A composite tile whose key
moved because one of its layers changed (an event's status in the live source, say) can
therefore be rebuilt from the other layers' bytes as last rendered at that address plus a
fresh render of the changed layer, byte for byte what a full render gives
(:meth:`tiles.service.TileService.render`).
"""

from __future__ import annotations


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _skip(buf: bytes, i: int, wire: int) -> int:
    if wire == 0:
        return _varint(buf, i)[1]
    if wire == 1:
        return i + 8
    if wire == 2:
        n, i = _varint(buf, i)
        return i + n
    if wire == 5:
        return i + 4
    raise ValueError(f"unsupported wire type {wire}")


def layer_name(layer: bytes) -> str:
    """The ``name`` (field 1) of an encoded ``Layer`` message (without its tag and length)."""
    i = 0
    while i < len(layer):
        tag, i = _varint(layer, i)
        if tag >> 3 == 1 and tag & 7 == 2:
            n, i = _varint(layer, i)
            return layer[i:i + n].decode()
        i = _skip(layer, i, tag & 7)
    raise ValueError("layer without a name")


def split_layers(tile: bytes) -> dict[str, bytes]:
    """Layer name → that layer's bytes as they stand in ``tile`` (tag and length included), so
    that joining the values in tile order gives ``tile`` back. Raises ``ValueError`` on bytes
    that are not an MVT."""
    out: dict[str, bytes] = {}
    i = 0
    while i < len(tile):
        start = i
        tag, i = _varint(tile, i)
        if tag != (3 << 3 | 2):
            raise ValueError(f"unexpected field {tag >> 3} (wire type {tag & 7}) in a tile")
        n, i = _varint(tile, i)
        if i + n > len(tile):
            raise ValueError("truncated layer")
        out[layer_name(tile[i:i + n])] = tile[start:i + n]
        i += n
    return out


__all__ = ["layer_name", "split_layers"]
