"""Helpers for scene tests: the Khronos glTF Validator (npm, tools/node) and GLB decoding."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from scenes.glb import read_glb

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "tools" / "node" / "validate.js"

_CTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def validate(blobs: list[bytes]) -> list[dict]:
    """Validator reports of the GLBs (one node process for all of them)."""
    assert (ROOT / "tools" / "node" / "node_modules" / "gltf-validator").is_dir(), \
        "gltf-validator missing: run ./run.sh test (or npm ci in tools/node)"
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, b in enumerate(blobs):
            p = Path(tmp) / f"{i}.glb"
            p.write_bytes(b)
            paths.append(str(p))
        out = subprocess.run(["node", str(VALIDATOR), *paths], capture_output=True, check=True, timeout=300)
    return json.loads(out.stdout)


def assert_valid(blobs: list[bytes], extensions: set[str] | None = None) -> list[dict]:
    reports = validate(blobs)
    for r in reports:
        errors = [m for m in r["issues"]["messages"] if m["severity"] == 0]
        assert r["issues"]["numErrors"] == 0, errors[:5]
        assert r["issues"]["numWarnings"] == 0, [m for m in r["issues"]["messages"] if m["severity"] == 1][:5]
        if extensions is not None:
            assert extensions <= set(r["info"].get("extensionsUsed", [])), r["info"]
    return reports


class Glb:
    """A decoded GLB: JSON, accessors as numpy, property tables as dicts of lists."""

    def __init__(self, data: bytes):
        self.json, self.bin = read_glb(data)

    def view(self, index: int) -> bytes:
        bv = self.json["bufferViews"][index]
        off = bv.get("byteOffset", 0)
        return self.bin[off: off + bv["byteLength"]]

    def accessor(self, index: int) -> np.ndarray:
        acc = self.json["accessors"][index]
        arr = np.frombuffer(self.view(acc["bufferView"]), _CTYPES[acc["componentType"]])
        width = _WIDTH[acc["type"]]
        return arr[: acc["count"] * width].reshape(acc["count"], width) if width > 1 else arr[: acc["count"]]

    def mesh(self, name: str) -> dict | None:
        for m in self.json.get("meshes", []):
            if m["name"] == name:
                return m["primitives"][0]
        return None

    def attribute(self, name: str, attr: str) -> np.ndarray:
        prim = self.mesh(name)
        assert prim is not None, f"no mesh {name}"
        return self.accessor(prim["attributes"][attr])

    def indices(self, name: str) -> np.ndarray:
        prim = self.mesh(name)
        assert prim is not None
        return self.accessor(prim["indices"]).astype(np.int64)

    def table(self, name: str) -> dict[str, list]:
        meta = self.json["extensions"]["EXT_structural_metadata"]
        classes = meta["schema"]["classes"]
        for t in meta["propertyTables"]:
            if t["name"] != name:
                continue
            out = {}
            for col, entry in t["properties"].items():
                kind = classes[t["class"]]["properties"][col]
                raw = self.view(entry["values"])
                if kind["type"] == "STRING":
                    offs = np.frombuffer(self.view(entry["stringOffsets"]), np.uint32)
                    out[col] = [raw[offs[i]:offs[i + 1]].decode() for i in range(t["count"])]
                elif kind["type"] == "BOOLEAN":
                    out[col] = list(np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[: t["count"]]
                                    .astype(bool))
                else:
                    dtype = {"INT32": "<i4", "FLOAT64": "<f8"}[kind["componentType"]]
                    out[col] = np.frombuffer(raw, dtype)[: t["count"]].tolist()
            return out
        raise KeyError(name)

    def enu(self, name: str) -> np.ndarray:
        """Positions of mesh ``name`` back in ENU (east, north, up) float64."""
        p = self.attribute(name, "POSITION").astype(np.float64)
        return np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1)

    @property
    def twin(self) -> dict:
        return self.json["asset"]["extras"]["twin"]
