"""The ``twin`` command: demo, serve, load, export, sample, tiles, migrate, config.

It assembles every package (the HTTP app included), so it lives at the top of
the dependency graph with the app rather than in the ``twin`` core. Heavy
imports happen inside each command so ``twin --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from twin.errors import TwinError


def _settings():
    from twin.settings import get_settings

    return get_settings()


def _store(settings=None):
    from twin.store import SpatialStore

    s = SpatialStore.from_settings(settings or _settings())
    s.migrate()
    return s


def _parse_mapping(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        src, sep, dst = p.partition("=")
        if not sep or not src or not dst:
            raise TwinError(f"--map takes src=dst, not {p!r}", code="invalid_parameter")
        out[src] = dst
    return out


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(_settings().masked(), indent=2, ensure_ascii=False))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from twin.migrate import current_revision

    store = _store()
    print(f"schema at revision {current_revision(store.engine)} ({store.dialect.name})")
    return 0


def _ensure_sample_town(settings, store, scale: float, seed: int, force: bool = False) -> None:
    from sample_data import build_sample_town

    rasters_ok = all((settings.raster_dir / f"{n}.tif").exists() for n in ("dem", "ortho"))
    if not force and store.summary("buildings").count > 0 and rasters_ok:
        return
    print(f"Building the sample town (scale {scale}, seed {seed}) into {store.dialect.name} …", flush=True)
    t0 = time.perf_counter()
    counts = build_sample_town(store, settings.raster_dir, seed=seed, scale=scale)
    print(f"  done in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)


def cmd_sample(args: argparse.Namespace) -> int:
    settings = _settings()
    store = _store(settings)
    _ensure_sample_town(settings, store, args.scale, args.seed, force=True)
    return 0


def _serve(settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run("gis_api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", proxy_headers=True)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    _store(settings)
    _serve(settings, args.host, args.port, args.workers)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("TWIN_RATE_LIMIT_RPS", "200")  # the demo shows the limits on; `serve` leaves them to you
    settings = _settings()
    store = _store(settings)
    _ensure_sample_town(settings, store, args.scale, args.seed)
    from gis_api.cli_security import provision_demo

    logins = "\n".join(f"    {n:<14} {p:<20} {','.join(r)}" for n, p, r in provision_demo(settings, store))
    base = f"http://{args.host}:{args.port}"
    print(
        "\ntwin demo is starting:\n"
        f"  viewer            {base}/\n"
        f"  OGC API landing   {base}/api\n"
        f"  API docs          {base}/api/docs\n"
        f"  layers            {base}/collections\n"
        f"  buildings         {base}/collections/buildings/items?limit=10\n"
        f"  data              {settings.effective_database_url}\n"
        f"  demo logins (POST /auth/token; for demos only):\n{logins}\n"
        "Warning: the demo app secret (TWIN_DEMO_APP_SECRET, default 'demo-secret') is for demos only.\n",
        flush=True,
    )
    _serve(settings, args.host, args.port, 1)
    return 0


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        col, sep, value = p.partition("=")
        if not sep or not col.strip():
            raise TwinError(f"--set takes column=value, not {p!r}", code="invalid_parameter")
        out[col.strip()] = value
    return out


def _progress_bar(path: Path):
    """A tqdm bar on stderr (only when stderr is a terminal) as ``progress(done, total)``."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(desc=path.name, unit=" rows", file=sys.stderr, leave=False)

    def progress(done: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return progress


def cmd_load(args: argparse.Namespace) -> int:
    if args.raster:
        return _load_raster(args)
    from twin.loader import load_file, load_preset

    store = _store()
    path = Path(args.file)
    progress = _progress_bar(path)
    if args.layer is None:
        if not args.preset:
            raise TwinError("give --layer (or --preset to fill every layer the preset knows, or --raster)",
                            code="invalid_parameter")
        reports = load_preset(store, path, args.preset, crs=args.crs, mode=args.mode, on_invalid=args.on_invalid,
                              max_rejects=args.max_rejects, encoding=args.encoding, progress=progress)
        print(json.dumps([_jsonable(r) for r in reports], indent=2, ensure_ascii=False, default=str))
        return 0
    report = load_file(
        store, path, args.layer, crs=args.crs, mapping=_parse_mapping(args.map or []),
        mode=args.mode, on_invalid=args.on_invalid, max_rejects=args.max_rejects,
        source_layer=args.source_layer, lon_field=args.lon_field, lat_field=args.lat_field,
        defaults=_parse_sets(args.set or []), code_from=args.code_from, code_pattern=args.code_pattern,
        where=args.where, encoding=args.encoding, preset=args.preset, progress=progress,
    )
    print(json.dumps(_jsonable(report), indent=2, ensure_ascii=False, default=str))
    return 0


def _load_raster(args: argparse.Namespace) -> int:
    from twin.raster_load import load_raster

    settings = _settings()
    report = load_raster(Path(args.file), args.raster, settings.raster_dir, crs=args.crs, nodata=args.nodata,
                         replace=args.mode == "replace")
    print(json.dumps(_jsonable(report), indent=2, ensure_ascii=False, default=str))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from twin.export import export_layer
    from twin.params import parse_bbox

    store = _store()
    n = export_layer(store, args.layer, Path(args.out), bbox=parse_bbox(args.bbox) if args.bbox else None,
                     crs=args.crs)
    print(f"wrote {n} features of {args.layer} to {args.out}")
    return 0


def _zooms(text: str) -> list[int]:
    lo, sep, hi = text.partition("-")
    try:
        return list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise TwinError(f"--zooms takes N or N-M, not {text!r}", code="invalid_parameter") from None


def cmd_tiles_seed(args: argparse.Namespace) -> int:
    from tiles.seed import seed_tiles
    from twin.params import parse_bbox

    store = _store()
    result = seed_tiles(store, args.layers.split(","), _zooms(args.zooms),
                        bbox=parse_bbox(args.bbox) if args.bbox else None)
    print(json.dumps(_jsonable(result), indent=2, default=str))
    return 0


def cmd_tiles_export(args: argparse.Namespace) -> int:
    from tiles.pmtiles_export import export_pmtiles
    from twin.params import parse_bbox

    store = _store()
    result = export_pmtiles(store, args.layers.split(","), _zooms(args.zooms), Path(args.out),
                            bbox=parse_bbox(args.bbox) if args.bbox else None)
    print(json.dumps(_jsonable(result), indent=2, default=str))
    return 0


def _jsonable(obj):
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return obj


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twin", description="twin: digital-twin map server and scene service")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="build the sample town into the embedded store if missing and serve it")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--scale", type=float, default=1.0)
    d.add_argument("--seed", type=int, default=20261123)
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="serve the API on the configured store")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=cmd_serve)

    sm = sub.add_parser("sample", help="(re)build the sample town in the configured store")
    sm.add_argument("--scale", type=float, default=1.0, help="N-times larger town (0.05 … 10+)")
    sm.add_argument("--seed", type=int, default=20261123)
    sm.set_defaults(func=cmd_sample)

    ld = sub.add_parser("load", help="import GeoJSON, GeoPackage, Shapefile, CSV, OSM (.osm/.pbf) or DXF into a "
                        "layer, or a GeoTIFF as the dem/ortho raster")
    ld.add_argument("file")
    ld.add_argument("--layer", help="target layer (omit with --preset to fill every layer the preset knows)")
    ld.add_argument("--crs", help="source CRS when the file does not say (e.g. EPSG:4528)")
    ld.add_argument("--map", action="append", metavar="SRC=DST", help="rename a source field to a column")
    ld.add_argument("--mode", choices=["append", "replace"], default="append")
    ld.add_argument("--on-invalid", choices=["repair", "refuse"], default="repair")
    ld.add_argument("--max-rejects", type=int, default=0, help="rows that may be skipped before the load fails")
    ld.add_argument("--source-layer", help="layer inside a GeoPackage")
    ld.add_argument("--lon-field")
    ld.add_argument("--lat-field")
    ld.add_argument("--set", action="append", metavar="COL=VALUE", help="default for empty cells of a column")
    ld.add_argument("--code-from", metavar="FIELD", help="make empty codes from a source field")
    ld.add_argument("--code-pattern", metavar="PATTERN", help="make empty codes from a pattern, e.g. 'B-{n:06d}' "
                    "({n}: row number, {id}: the id field or the row number, {FIELD}: any source field)")
    ld.add_argument("--preset", help="load preset: osm, cjj61, twin (or your own in TWIN_PRESETS_DIR)")
    ld.add_argument("--where", help="OGR SQL filter, e.g. \"Layer IN ('GXLINE')\" for a DXF")
    ld.add_argument("--encoding", help="text encoding of a Shapefile without .cpg, e.g. GBK")
    ld.add_argument("--raster", choices=["dem", "ortho"], help="load a GeoTIFF as this raster (COG, EPSG:3857)")
    ld.add_argument("--nodata", type=float, help="raster nodata value when the file does not say")
    ld.set_defaults(func=cmd_load)

    ex = sub.add_parser("export", help="export a layer to GeoJSON or GeoPackage")
    ex.add_argument("layer")
    ex.add_argument("out")
    ex.add_argument("--bbox")
    ex.add_argument("--crs")
    ex.set_defaults(func=cmd_export)

    t = sub.add_parser("tiles", help="vector tile seeding and PMTiles export")
    tsub = t.add_subparsers(dest="tiles_command", required=True)
    ts = tsub.add_parser("seed", help="render tiles into the cache")
    ts.add_argument("--layers", required=True)
    ts.add_argument("--zooms", required=True, help="N or N-M")
    ts.add_argument("--bbox")
    ts.set_defaults(func=cmd_tiles_seed)
    te = tsub.add_parser("export-pmtiles", help="write a PMTiles archive")
    te.add_argument("out")
    te.add_argument("--layers", required=True)
    te.add_argument("--zooms", required=True, help="N or N-M")
    te.add_argument("--bbox")
    te.set_defaults(func=cmd_tiles_export)

    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(func=cmd_migrate)
    sub.add_parser("config", help="print the effective settings (secrets masked)").set_defaults(func=cmd_config)
    from gis_api.cli_security import add_parsers as add_security_parsers

    add_security_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TwinError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        if exc.detail:
            print(json.dumps(exc.detail, indent=2, ensure_ascii=False, default=str)[:4000], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
