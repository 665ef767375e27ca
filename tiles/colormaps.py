"""Colormaps for single-band rasters (the DEM): rio-tiler's named maps, validated once.

A colormap maps the 0–255 values of a rescaled band to RGBA. Names are the
rio-tiler (matplotlib-derived) ones, lower case: ``terrain``, ``viridis``, ``gist_earth``…
"""

from __future__ import annotations

from functools import lru_cache

from rio_tiler.colormap import cmap as _registry

from twin.errors import InvalidParameter

#: Used for single-band datasets when the request names no colormap.
DEFAULT_COLORMAP = "terrain"

ColorMap = dict[int, tuple[int, int, int, int]]


def colormap_names() -> list[str]:
    """Every name ``colormap=`` accepts, sorted."""
    return sorted(_registry.list())


@lru_cache(maxsize=64)
def get_colormap(name: str) -> ColorMap:
    """The 256-entry RGBA map called ``name`` (case-insensitive); :class:`InvalidParameter` otherwise."""
    key = name.strip().lower()
    if key not in _registry.list():
        raise InvalidParameter(
            f"unknown colormap {name!r}",
            detail={"parameter": "colormap", "examples": ["terrain", "viridis", "gist_earth", "greys"]},
        )
    return _registry.get(key)
