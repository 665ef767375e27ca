"""Drawing a cross-section as SVG, the way a pipeline engineer reads one (管线横断面图).

Ground line with the earth hatched below it; each pipe as a circle of its true
diameter at its depth (an ellipse when the vertical scale is exaggerated, stated in the
title block), coloured by utility after the usual Chinese pipeline colour code
(CJJ 61: water blue, rain/sewage brown, gas magenta, heat orange, power red, telecom
green); a dimension line from the ground to each pipe top with its cover depth; below
the drawing a table of pipe number, utility, DN, material, top and invert elevations;
axes in metres (offset along the cut, elevation) and a scale bar.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

from twin.analysis.section import CrossSection

COLOURS = {"water_supply": "#0070c0", "rain": "#8b4513", "sewage": "#6b3a1e", "gas": "#d4009b",
           "heat": "#f08000", "power": "#e00000", "telecom": "#00a050"}
LABELS = {"water_supply": "给水 JS", "rain": "雨水 YS", "sewage": "污水 WS", "gas": "燃气 RQ", "heat": "热力 RL",
          "power": "电力 DL", "telecom": "通信 TX"}


def _nice_step(span: float, target: int = 6) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def cross_section_svg(sec: CrossSection, title: str = "管线横断面图 Pipeline cross-section", width: int = 900) -> str:
    """An SVG document of ``sec``."""
    margin_l, margin_r, top_pad = 70, 30, 60
    plot_w = width - margin_l - margin_r
    length = max(sec.length_m, 1e-6)
    ground = sec.profile_ground_m
    finite = ground[np.isfinite(ground)]
    levels = list(finite)
    for c in sec.crossings:
        levels += [v for v in (c.ground_m, c.invert_m, c.top_m) if v is not None]
    zmax = max(levels) if levels else 0.0
    zmin = min(levels) if levels else -3.0
    zmax, zmin = zmax + 0.5, zmin - 0.5
    sx = plot_w / length
    span = max(zmax - zmin, 1.0)
    sy = max(sx, 220.0 / span)  # at least 220 px of height: exaggerate the vertical if the cut is long
    plot_h = span * sy
    exag = sy / sx
    table_h = 22 + 18 * len(sec.crossings)
    height = int(top_pad + plot_h + 50 + table_h + 20)

    def X(off: float) -> float:
        return margin_l + off * sx

    def Y(z: float) -> float:
        return top_pad + (zmax - z) * sy

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        '<defs><pattern id="earth" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<line x1="0" y1="0" x2="0" y2="8" stroke="#b8a07a" stroke-width="1"/></pattern></defs>',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="{width / 2}" y="38" text-anchor="middle">cut length {sec.length_m:.1f} m · '
        f'H 1:{_scale(sx)} · V 1:{_scale(sy)} (vertical exaggeration ×{exag:.1f})</text>',
    ]
    # elevation grid and axis
    zstep = _nice_step(span)
    z = math.ceil(zmin / zstep) * zstep
    while z <= zmax:
        out.append(f'<line x1="{margin_l}" y1="{Y(z):.1f}" x2="{margin_l + plot_w}" y2="{Y(z):.1f}" '
                   f'stroke="#e4e4e4"/><text x="{margin_l - 6}" y="{Y(z) + 4:.1f}" text-anchor="end">{z:g}</text>')
        z += zstep
    out.append(f'<text x="14" y="{top_pad + plot_h / 2:.1f}" transform="rotate(-90 14 {top_pad + plot_h / 2:.1f})" '
               f'text-anchor="middle">elevation 高程 (m)</text>')
    # offset axis
    ostep = _nice_step(length, 8)
    o = 0.0
    base = top_pad + plot_h
    while o <= length + 1e-9:
        out.append(f'<line x1="{X(o):.1f}" y1="{base:.1f}" x2="{X(o):.1f}" y2="{base + 5:.1f}" stroke="black"/>'
                   f'<text x="{X(o):.1f}" y="{base + 17:.1f}" text-anchor="middle">{o:g}</text>')
        o += ostep
    out.append(f'<line x1="{margin_l}" y1="{base:.1f}" x2="{margin_l + plot_w}" y2="{base:.1f}" stroke="black"/>')
    out.append(f'<text x="{margin_l + plot_w / 2}" y="{base + 32:.1f}" text-anchor="middle">'
               f'offset along the cut 距起点 (m)</text>')
    # ground: earth below, line on top
    ok = np.isfinite(ground)
    if ok.sum() >= 2:
        pts = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in zip(sec.profile_offsets_m[ok], ground[ok], strict=True))
        first, last = sec.profile_offsets_m[ok][0], sec.profile_offsets_m[ok][-1]
        out.append(f'<polygon points="{X(first):.1f},{base:.1f} {pts} {X(last):.1f},{base:.1f}" '
                   f'fill="url(#earth)" stroke="none"/>')
        out.append(f'<polyline points="{pts}" fill="none" stroke="#5a3e1b" stroke-width="2"/>')
        out.append(f'<text x="{X(first) + 4:.1f}" y="{Y(ground[ok][0]) - 6:.1f}">ground 地面</text>')
    # pipes
    for k, c in enumerate(sec.crossings, start=1):
        if c.invert_m is None or c.top_m is None:
            continue
        colour = COLOURS.get(c.utility or "", "#444")
        r = (c.diameter_mm or 0) / 2000.0
        cx, cy = X(c.offset_m), Y(c.invert_m + r)
        out.append(f'<ellipse cx="{cx:.1f}" cy="{cy:.1f}" rx="{max(r * sx, 2):.1f}" ry="{max(r * sy, 2):.1f}" '
                   f'fill="{colour}" fill-opacity="0.35" stroke="{colour}" stroke-width="1.5">'
                   f'<title>{escape(c.code or "")} {escape(c.utility or "")} DN{c.diameter_mm or 0:g}</title></ellipse>')
        out.append(f'<text x="{cx:.1f}" y="{cy + 4:.1f}" text-anchor="middle" font-weight="bold">{k}</text>')
        if c.ground_m is not None:
            out.append(f'<line x1="{cx:.1f}" y1="{Y(c.ground_m):.1f}" x2="{cx:.1f}" y2="{Y(c.top_m):.1f}" '
                       f'stroke="{colour}" stroke-dasharray="3,2"/>')
            out.append(f'<text x="{cx + 4:.1f}" y="{(Y(c.ground_m) + Y(c.top_m)) / 2 + 4:.1f}" fill="{colour}">'
                       f'{c.top_depth_m:.2f}</text>')
    # scale bar (horizontal)
    bar = _nice_step(length, 4)
    out.append(f'<line x1="{margin_l}" y1="{top_pad - 10}" x2="{margin_l + bar * sx:.1f}" y2="{top_pad - 10}" '
               f'stroke="black" stroke-width="3"/><text x="{margin_l + bar * sx + 6:.1f}" y="{top_pad - 6}">{bar:g} m</text>')
    # table
    ty = base + 50
    cols = [(0, "No."), (30, "code 编号"), (125, "utility 类别"), (205, "DN (mm)"), (265, "material 材质"),
            (400, "offset (m)"), (470, "top 管顶 (m)"), (555, "invert 管底 (m)"), (650, "cover 埋深 (m)")]
    out.append("".join(f'<text x="{margin_l + x}" y="{ty:.1f}" font-weight="bold">{escape(h)}</text>' for x, h in cols))
    for k, c in enumerate(sec.crossings, start=1):
        y = ty + 18 * k
        vals = [str(k), c.code or "", LABELS.get(c.utility or "", c.utility or ""), f"{c.diameter_mm or 0:g}",
                c.material or "", f"{c.offset_m:.2f}", _f(c.top_m), _f(c.invert_m), _f(c.top_depth_m)]
        out.append("".join(f'<text x="{margin_l + x}" y="{y:.1f}">{escape(v)}</text>'
                           for (x, _), v in zip(cols, vals, strict=True)))
    out.append("</svg>")
    return "\n".join(out)


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _scale(px_per_m: float) -> str:
    """Drawing scale as 1:n at 96 dpi."""
    return f"{round(96 / 0.0254 / px_per_m):,}"


__all__ = ["cross_section_svg"]
