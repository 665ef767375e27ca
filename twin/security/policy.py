"""Who may do what to which layer, and which fields they may see: roles as data (roles.json).

``Policy.can(roles, layer, permission)`` and ``Policy.hidden(roles, layer)`` are the only
questions the services ask; the HTTP layer asks them in one place per service (features,
queryables, tiles, TileJSON, style, WMTS, scenes, live streams, analyses).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PERMISSIONS = ("read", "write", "analyse", "live")
DEFAULT_FILE = Path(__file__).with_name("roles.json")


@dataclass(frozen=True)
class Role:
    name: str
    title: str
    layers: dict[str, frozenset[str]]
    hidden_fields: dict[str, frozenset[str]]

    def perms(self, layer: str) -> frozenset[str]:
        return self.layers.get(layer, self.layers.get("*", frozenset()))


class Policy:
    def __init__(self, roles: dict[str, Role]):
        self.roles = roles

    @classmethod
    def from_file(cls, path: Path | str | None = None) -> Policy:
        return _load(str(path or DEFAULT_FILE))

    def can(self, roles: Iterable[str], layer: str, permission: str) -> bool:
        return any(permission in r.perms(layer) for r in self._of(roles))

    def hidden(self, roles: Iterable[str], layer: str) -> frozenset[str]:
        """Fields hidden from a principal: those hidden by every role of theirs that reads the layer."""
        readers = [r for r in self._of(roles) if "read" in r.perms(layer)]
        if not readers:
            return frozenset()
        out = readers[0].hidden_fields.get(layer, frozenset())
        for r in readers[1:]:
            out &= r.hidden_fields.get(layer, frozenset())
        return out

    def readable(self, roles: Iterable[str], layers: Iterable[str]) -> list[str]:
        return [layer for layer in layers if self.can(roles, layer, "read")]

    def _of(self, roles: Iterable[str]) -> list[Role]:
        return [self.roles[r] for r in roles if r in self.roles]


@lru_cache(maxsize=8)
def _load(path: str) -> Policy:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    roles: dict[str, Role] = {}
    for name, spec in doc["roles"].items():
        layers = {layer: frozenset(p) for layer, p in spec.get("layers", {}).items()}
        for layer, perms in layers.items():
            unknown = perms - set(PERMISSIONS)
            if unknown:
                raise ValueError(f"{path}: role {name}, layer {layer}: unknown permissions {sorted(unknown)}")
        roles[name] = Role(name, spec.get("title", name), layers,
                           {layer: frozenset(f) for layer, f in spec.get("hidden_fields", {}).items()})
    return Policy(roles)


__all__ = ["PERMISSIONS", "Policy", "Role"]
