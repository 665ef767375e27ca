"""Binary glTF 2.0 writer with per-vertex feature ids and property tables.

Each layer becomes one node + mesh + primitive. A primitive's ``_FEATURE_ID_0``
attribute holds, per vertex, the row of its feature in the layer's property table;
``EXT_mesh_features`` ties the attribute to the table and ``EXT_structural_metadata``
stores the tables (one class per layer, columns typed from the data). A client reads
the picked row's ``id`` and ``layer`` and asks ``/collections/{layer}/items/{id}``.

Written by hand with numpy (no per-vertex Python): buffers are concatenated once,
each buffer view 8-byte aligned (what the metadata extension requires for property
values, and harmless for the rest).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scenes.frame import to_gltf_axes
from scenes.meshes import MeshPart

INT_NODATA = -2147483648
FLOAT_NODATA = -3.4028234663852886e38


@dataclass
class PropertyTable:
    """One layer's rows: ``columns`` maps a name to a list of values (int, float, bool, str or None)."""

    name: str
    columns: dict[str, list[Any]]
    description: str = ""

    @property
    def count(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@dataclass
class LayerMesh:
    """A layer's geometry with its look; ``table`` is the index of its property table or None."""

    name: str
    part: MeshPart
    color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    table: int | None = None
    texture_jpeg: bytes | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class _Buffer:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: list[dict[str, Any]] = []

    def add(self, data: bytes, target: int | None = None) -> int:
        pad = (-self.size) % 8
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.chunks.append(data)
        self.size += len(data)
        return len(self.views) - 1

    def bytes(self) -> bytes:
        out = b"".join(self.chunks)
        return out + b"\0" * ((-len(out)) % 4)


def _column_kind(values: Sequence[Any]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "STRING"
    if kinds <= {bool, np.bool_}:
        return "BOOLEAN"
    if kinds <= {int, np.int64, np.int32}:
        big = max((abs(int(v)) for v in values if v is not None), default=0)
        return "INT32" if big < 2**31 - 1 else "FLOAT64"
    if kinds <= {int, float, np.float64, np.int64}:
        return "FLOAT64"
    return "STRING"


def _property(buf: _Buffer, values: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(class property schema, property table entry) for one column."""
    kind = _column_kind(values)
    if kind == "BOOLEAN":
        bits = np.packbits(np.array([bool(v) for v in values]), bitorder="little")
        return {"type": "BOOLEAN"}, {"values": buf.add(bits.tobytes())}
    if kind == "INT32":
        arr = np.array([INT_NODATA if v is None else int(v) for v in values], "<i4")
        schema: dict[str, Any] = {"type": "SCALAR", "componentType": "INT32"}
        if any(v is None for v in values):
            schema["noData"] = INT_NODATA
        return schema, {"values": buf.add(arr.tobytes())}
    if kind == "FLOAT64":
        arr = np.array([FLOAT_NODATA if v is None else float(v) for v in values], "<f8")
        schema = {"type": "SCALAR", "componentType": "FLOAT64"}
        if any(v is None for v in values):
            schema["noData"] = FLOAT_NODATA
        return schema, {"values": buf.add(arr.tobytes())}
    encoded = [b"" if v is None else (v if isinstance(v, str) else _text(v)).encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, "<u4")
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    return {"type": "STRING"}, {
        "values": buf.add(b"".join(encoded)),
        "stringOffsets": buf.add(offsets.tobytes()),
        "stringOffsetType": "UINT32",
    }


def _text(v: Any) -> str:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return json.dumps(v, ensure_ascii=False, default=str)


def _accessor(gltf: dict, buf: _Buffer, arr: np.ndarray, gtype: str, ctype: int, target: int | None,
              minmax: bool = False, normalized: bool = False) -> int:
    acc: dict[str, Any] = {"bufferView": buf.add(np.ascontiguousarray(arr).tobytes(), target),
                           "componentType": ctype, "count": int(len(arr)), "type": gtype}
    if normalized:
        acc["normalized"] = True
    if minmax:
        acc["min"] = [float(v) for v in arr.min(axis=0)]
        acc["max"] = [float(v) for v in arr.max(axis=0)]
    gltf["accessors"].append(acc)
    return len(gltf["accessors"]) - 1


def _normals(gltf: dict, buf: _Buffer, nrm: np.ndarray) -> int:
    """Unit normals as normalised signed bytes (KHR_mesh_quantization): 4 bytes a vertex instead of 12."""
    q = np.zeros((len(nrm), 4), np.int8)
    q[:, :3] = np.clip(np.round(nrm * 127.0), -127, 127)
    view = buf.add(q.tobytes(), 34962)
    buf.views[view]["byteStride"] = 4
    gltf["accessors"].append({"bufferView": view, "componentType": 5120, "normalized": True,
                              "count": int(len(nrm)), "type": "VEC3"})
    return len(gltf["accessors"]) - 1


def write_glb(meshes: Sequence[LayerMesh], tables: Sequence[PropertyTable], extras: dict[str, Any]) -> bytes:
    """A GLB of ``meshes`` (empty ones are skipped) with ``tables`` as structural metadata."""
    buf = _Buffer()
    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "twin scenes", "extras": extras},
        "scene": 0, "scenes": [{"nodes": []}], "nodes": [], "meshes": [], "materials": [],
        "accessors": [], "bufferViews": [], "buffers": [],
    }
    used: set[str] = set()
    classes: dict[str, Any] = {}
    prop_tables: list[dict[str, Any]] = []
    for t in tables:
        cls_props: dict[str, Any] = {}
        tbl_props: dict[str, Any] = {}
        for name, values in t.columns.items():
            cls_props[name], tbl_props[name] = _property(buf, values)
        classes[t.name] = {"name": t.name, "description": t.description or t.name, "properties": cls_props}
        prop_tables.append({"name": t.name, "class": t.name, "count": t.count, "properties": tbl_props})
    root_children = []
    for m in meshes:
        p = m.part
        if p.triangles == 0:
            continue
        pos = to_gltf_axes(p.positions)
        nrm = to_gltf_axes(p.normals.astype(np.float64))
        nrm[np.abs(nrm).sum(axis=1) == 0] = (0.0, 1.0, 0.0)  # degenerate faces (repeated vertices)
        attrs = {
            "POSITION": _accessor(gltf, buf, pos, "VEC3", 5126, 34962, minmax=True),
            "NORMAL": _normals(gltf, buf, nrm),
        }
        used.add("KHR_mesh_quantization")
        material: dict[str, Any] = {"name": m.name, "pbrMetallicRoughness": {
            "baseColorFactor": list(m.color), "metallicFactor": 0.0, "roughnessFactor": 0.9}}
        if m.color[3] < 1.0:
            material["alphaMode"] = "BLEND"
        if p.colors is not None:
            attrs["COLOR_0"] = _accessor(gltf, buf, p.colors, "VEC4", 5121, 34962, normalized=True)
            material["pbrMetallicRoughness"]["baseColorFactor"] = [1.0, 1.0, 1.0, m.color[3]]
        if p.uvs is not None and m.texture_jpeg is not None:
            attrs["TEXCOORD_0"] = _accessor(gltf, buf, p.uvs, "VEC2", 5126, 34962)
            img = buf.add(m.texture_jpeg)
            gltf.setdefault("images", []).append({"bufferView": img, "mimeType": "image/jpeg"})
            gltf.setdefault("samplers", []).append({"magFilter": 9729, "minFilter": 9987, "wrapS": 33071,
                                                    "wrapT": 33071})
            gltf.setdefault("textures", []).append({"sampler": len(gltf["samplers"]) - 1,
                                                    "source": len(gltf["images"]) - 1})
            material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": len(gltf["textures"]) - 1}
            material["pbrMetallicRoughness"]["baseColorFactor"] = [1.0, 1.0, 1.0, 1.0]
        prim: dict[str, Any] = {"attributes": attrs, "mode": 4, "material": len(gltf["materials"])}
        gltf["materials"].append(material)
        if m.table is not None:
            attrs["_FEATURE_ID_0"] = _accessor(gltf, buf, p.feature.astype(np.float32), "SCALAR", 5126, 34962)
            prim["extensions"] = {"EXT_mesh_features": {"featureIds": [{
                "featureCount": tables[m.table].count, "attribute": 0, "propertyTable": m.table,
                "label": m.name}]}}
            used.add("EXT_mesh_features")
        big = len(pos) > 65535
        idx = p.indices.astype(np.uint32 if big else np.uint16)
        prim["indices"] = _accessor(gltf, buf, idx, "SCALAR", 5125 if big else 5123, 34963)
        if p.outline is not None and len(p.outline):
            lines = p.outline.astype(np.uint32 if big else np.uint16)
            prim.setdefault("extensions", {})["CESIUM_primitive_outline"] = {
                "indices": _accessor(gltf, buf, lines, "SCALAR", 5125 if big else 5123, 34963)}
            used.add("CESIUM_primitive_outline")
        gltf["meshes"].append({"name": m.name, "primitives": [prim]})
        node: dict[str, Any] = {"name": m.name, "mesh": len(gltf["meshes"]) - 1}
        if m.extras:
            node["extras"] = m.extras
        gltf["nodes"].append(node)
        root_children.append(len(gltf["nodes"]) - 1)
    root: dict[str, Any] = {"name": "twin"}
    if root_children:
        root["children"] = root_children
    gltf["nodes"].append(root)
    gltf["scenes"][0]["nodes"] = [len(gltf["nodes"]) - 1]
    if tables:
        gltf["extensions"] = {"EXT_structural_metadata": {
            "schema": {"id": "twin", "classes": classes}, "propertyTables": prop_tables}}
        used.add("EXT_structural_metadata")
    if used:
        gltf["extensionsUsed"] = sorted(used)
    if "KHR_mesh_quantization" in used:
        gltf["extensionsRequired"] = ["KHR_mesh_quantization"]
    binary = buf.bytes()
    if binary:
        gltf["buffers"] = [{"byteLength": len(binary)}]
        gltf["bufferViews"] = buf.views
    for key in ("accessors", "bufferViews", "buffers", "meshes", "materials"):
        if not gltf[key]:
            del gltf[key]
    js = json.dumps(gltf, separators=(",", ":"), allow_nan=False).encode()
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + (8 + len(binary) if binary else 0)
    out = [struct.pack("<III", 0x46546C67, 2, total), struct.pack("<II", len(js), 0x4E4F534A), js]
    if binary:
        out += [struct.pack("<II", len(binary), 0x004E4942), binary]
    return b"".join(out)


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON, binary chunk) of a GLB — for tests and tools."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67 or version != 2 or total != len(data):
        raise ValueError("not a glTF 2.0 binary")
    jlen, _ = struct.unpack_from("<II", data, 12)
    gltf = json.loads(data[20:20 + jlen])
    rest = 20 + jlen
    binary = b""
    if rest < len(data):
        blen, _ = struct.unpack_from("<II", data, rest)
        binary = data[rest + 8: rest + 8 + blen]
    return gltf, binary
