"""Load presets: named mapping files that say how a kind of source becomes twin layers.

A preset is a JSON file (built-in ones in ``twin/presets/``; your own in
``TWIN_PRESETS_DIR``, which win over a built-in of the same name)::

    {"name": "osm", "description": "…", "sources": ["…where the field names come from…"],
     "targets": [
       {"layer": "buildings", "source_layer": "multipolygons", "where": "building IS NOT NULL",
        "map": {"building:levels": "floors", "height": "height_m", "building": "use", "name": "name"},
        "values": {"use": {"house": "residential", "*": "other"}},
        "set": {"use": "unknown"},
        "code_pattern": "osm-{osm_ref}"}]}

Per target: ``source_layer``/``where`` pick and filter the features (applied
only when the file has that layer, so an OSM preset also reads a GeoJSON export
of OSM); ``map`` renames source fields to columns (fields the file lacks are
ignored; ``key:with:colons`` are read from OSM's ``other_tags`` too);
``values`` translates source values per column (``"*"``: anything else);
``set`` gives defaults for empty cells; ``code_from``/``code_pattern`` make codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.errors import InvalidParameter

BUILTIN_DIR = Path(__file__).parent / "presets"


@dataclass
class Target:
    """One layer a preset (or a plain ``load_file`` call) fills from one source layer."""

    layer: str
    source_layer: str | None = None
    where: str | None = None
    map: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)
    code_from: str | None = None
    code_pattern: str | None = None
    lenient_map: bool = False  # preset maps name fields a file may not have


@dataclass
class Preset:
    name: str
    description: str
    targets: list[Target]
    path: Path


def _dirs() -> list[Path]:
    from twin.settings import get_settings

    own = get_settings().presets_dir
    return [d for d in (own, BUILTIN_DIR) if d is not None]


def preset_names() -> list[str]:
    names = {p.stem for d in _dirs() if d.is_dir() for p in d.glob("*.json") if not p.stem.startswith("_")}
    return sorted(names)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (your folder first, then the built-ins)."""
    if not name or "/" in name or "\\" in name or name.startswith(("_", ".")):
        raise InvalidParameter(f"no load preset {name!r}", detail={"presets": preset_names()})
    for d in _dirs():
        p = d / f"{name}.json"
        if p.is_file():
            return parse_preset(p)
    raise InvalidParameter(f"no load preset {name!r}", detail={"presets": preset_names()})


_TARGET_KEYS = {"layer", "source_layer", "where", "map", "values", "set", "code_from", "code_pattern", "_doc"}


def parse_preset(path: Path) -> Preset:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameter(f"load preset {path.name!r} is not valid JSON ({exc})") from None
    targets = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(targets, list) or not targets:
        raise InvalidParameter(f"load preset {path.name!r} needs a non-empty 'targets' list")
    out = []
    for t in targets:
        if not isinstance(t, dict) or not isinstance(t.get("layer"), str):
            raise InvalidParameter(f"load preset {path.name!r}: every target needs a 'layer'")
        unknown = set(t) - _TARGET_KEYS
        if unknown:
            raise InvalidParameter(f"load preset {path.name!r}: unknown keys {sorted(unknown)} in target {t['layer']!r}")
        out.append(Target(layer=t["layer"], source_layer=t.get("source_layer"), where=t.get("where"),
                          map=dict(t.get("map") or {}), values=dict(t.get("values") or {}),
                          set=dict(t.get("set") or {}), code_from=t.get("code_from"),
                          code_pattern=t.get("code_pattern"), lenient_map=True))
    return Preset(name=str(data.get("name") or path.stem), description=str(data.get("description") or ""),
                  targets=out, path=path)


__all__ = ["Preset", "Target", "get_preset", "parse_preset", "preset_names", "BUILTIN_DIR"]
