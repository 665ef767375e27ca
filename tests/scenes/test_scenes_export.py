"""`twin scenes export DIR` as an operator runs it: tileset + content on disk, progress on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gltf_check import assert_valid


def test_export_writes_a_static_tileset(town_settings, tmp_path):
    env = {**os.environ, "TWIN_HOME": str(town_settings.home), "TWIN_DATABASE_URL": town_settings.database_url,
           "TWIN_SCENE_TILE_FEATURE_CAP": "200", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "3d"
    r = subprocess.run([sys.executable, "-m", "gis_api.cli", "scenes", "export", str(out),
                        "--layers", "buildings,pipelines"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert "tiles [" in r.stderr and f"{result['tiles']}/{result['tiles']}" in r.stderr
    doc = json.loads((out / "tileset.json").read_text())
    uris = []

    def walk(node):
        if "content" in node:
            uris.append(node["content"]["uri"])
        for c in node.get("children", []):
            walk(c)

    walk(doc["root"])
    assert len(uris) == result["tiles"] > 1
    assert all(not u.startswith("/") and "?" not in u for u in uris)  # relative: works from any static host
    blobs = [(out / u).read_bytes() for u in uris]
    assert sum(map(len, blobs)) == result["bytes"]
    assert_valid(blobs[:5], {"EXT_mesh_features", "EXT_structural_metadata"})


def test_export_refuses_an_unknown_layer(town_settings, tmp_path):
    env = {**os.environ, "TWIN_HOME": str(town_settings.home), "TWIN_DATABASE_URL": town_settings.database_url,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "gis_api.cli", "scenes", "export", str(tmp_path / "x"),
                        "--layers", "terrain"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "invalid_parameter" in r.stderr
