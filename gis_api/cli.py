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

    # behind nginx on another host, the proxies twin trusts for X-Forwarded-For (TWIN_TRUSTED_PROXIES)
    # are the ones uvicorn believes too, so request.client is the real client for logs and the audit
    extra = {"forwarded_allow_ips": settings.trusted_proxies} if settings.trusted_proxies else {}
    uvicorn.run("gis_api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", proxy_headers=True, **extra)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.warm:  # read by every worker's settings
        os.environ["TWIN_TILE_WARM"] = "true"
    settings = _settings()
    _store(settings)
    _serve(settings, args.host, args.port, args.workers)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("TWIN_RATE_LIMIT_RPS", "200")  # the demo shows the limits on; `serve` leaves them to you
    os.environ.setdefault("TWIN_TILE_WARM", "true")  # the demo keeps its pyramid warm
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
    _start_demo_feed(settings, store)
    stream = _start_demo_video(settings, base) if settings.demo_video and not args.no_video else None
    try:
        _serve(settings, args.host, args.port, 1)
    finally:
        if stream is not None:
            stream.stop()
    return 0


def _start_demo_video(settings, base: str):
    """The synthetic HLS stream every sample camera points to (ffmpeg child process), or None."""
    from layers.demo_video import DemoStream, VideoUnavailable

    stream = DemoStream(settings.video_dir / "demo")
    try:
        stream.start()
    except VideoUnavailable as exc:
        print(f"Warning: no demo video: {exc.message}", flush=True)
        return None
    print(f"  demo video        {base}/video/demo/index.m3u8 (ffmpeg pid {stream.process.pid})\n", flush=True)
    return stream


def _devices(store):  # noqa: ANN001, ANN202
    from layers.registry import Registry

    registry = Registry(store)
    registry.load()
    return registry.all("devices")


def cmd_simulate(args: argparse.Namespace) -> int:
    from layers.simulate import Simulation, mqtt_publisher

    settings = _settings()
    things = _devices(_store(settings))
    if not things:
        raise TwinError("no devices in the store: run `twin sample` first", code="not_found")
    if args.speed <= 0 or args.hours <= 0 or args.step <= 0:
        raise TwinError("--speed, --hours and --step must be positive", code="invalid_parameter")
    url = args.mqtt or settings.mqtt_url or "mqtt://127.0.0.1:1883"
    client, publish = mqtt_publisher(url, settings.mqtt_topic_prefix)
    print(f"Simulating {args.hours:g} h of {len(things)} devices to {url} at {args.speed:g}x "
          f"(a rain event 11-15 h, a gas leak 14-16 h local time)", flush=True)
    try:
        sent = Simulation(things, publish, hours=args.hours, step_s=args.step, speed=args.speed,
                          seed=args.seed).run()
    finally:
        client.loop_stop()
        client.disconnect()
    print(f"published {sent} readings", flush=True)
    return 0


def _start_demo_feed(settings, store) -> None:  # noqa: ANN001
    """``twin demo``: a gentle real-time feed (every device every 30 s) so the map moves."""
    import datetime as dt
    import threading

    import numpy as np

    from layers.simulate import live_values, mqtt_publisher

    things = _devices(store)
    if not settings.mqtt_url or not things:
        return

    def run() -> None:
        try:
            _, publish = mqtt_publisher(settings.mqtt_url, settings.mqtt_topic_prefix, client_id="twin-demo-feed")
        except OSError as exc:
            print(f"demo feed: MQTT broker unreachable ({exc}); the map stays still", file=sys.stderr)
            return
        rng = np.random.default_rng(1)
        tz = dt.timezone(dt.timedelta(hours=8))
        while True:
            for code, payload in live_values(things, rng, tz):
                publish(code, payload)
                time.sleep(30.0 / len(things))

    threading.Thread(target=run, name="twin-demo-feed", daemon=True).start()
    print(f"  live feed         {len(things)} devices over {settings.mqtt_url} (twin simulate for a whole day)",
          flush=True)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        col, sep, value = p.partition("=")
        if not sep or not col.strip():
            raise TwinError(f"--set takes column=value, not {p!r}", code="invalid_parameter")
        out[col.strip()] = value
    return out


def _load_progress(path: Path):  # noqa: ANN202 - a callback (done, total) or None
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
    if args.format in ("epanet", "swmm"):
        return _load_network(args)
    from twin.loader import load_file, load_preset

    store = _store()
    path = Path(args.file)
    progress = _load_progress(path)
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


def _load_network(args: argparse.Namespace) -> int:
    """``twin load net.inp --format epanet|swmm (--crs EPSG:… | --origin lon,lat)`` (twin.analysis.epanet, .swmm)."""
    from twin.analysis.epanet import load_epanet
    from twin.analysis.inputs import parse_point
    from twin.analysis.swmm import load_swmm

    origin = parse_point(args.origin, "--origin") if args.origin else None
    load = load_epanet if args.format == "epanet" else load_swmm
    prefix = args.prefix or ("EP-" if args.format == "epanet" else "SW-")
    counts = load(_store(), Path(args.file), crs=args.crs, origin=origin, prefix=prefix)
    print(json.dumps(counts))
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


def _progress_bar(label: str):  # noqa: ANN202 - a callback (done, total)
    """A one-line text progress bar on stderr: ``label [#####.....] done/total``."""
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        rate = done / max(time.monotonic() - started, 1e-9)
        end = "\n" if done >= total else ""
        print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:.0f}/s)",
              end=end, file=sys.stderr, flush=True)

    return show


def cmd_scenes_export(args: argparse.Namespace) -> int:
    from scenes.service import SceneService

    settings = _settings()
    svc = SceneService(_store(settings), settings)
    layers = svc.tileset_layers(args.layers)
    started = time.monotonic()
    result = svc.export(layers, Path(args.dir), progress=_progress_bar("tiles"))
    result["seconds"] = round(time.monotonic() - started, 2)
    svc.close()
    print(json.dumps(result, indent=2))
    return 0


def cmd_terrain_export(args: argparse.Namespace) -> int:
    from scenes.terrain import TerrainService

    s = _settings()
    svc = TerrainService(s.raster_dir / f"{s.terrain_dataset}.tif", max_zoom=s.terrain_max_zoom,
                         finest_m=s.terrain_tolerance_m)
    started = time.monotonic()
    result = svc.export(Path(args.dir), normals=not args.no_normals, progress=_progress_bar("terrain"))
    result["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(result, indent=2))
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
    d.add_argument("--no-video", action="store_true", help="do not start the synthetic HLS camera stream (ffmpeg)")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="serve the API on the configured store")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--warm", action="store_true",
                   help="render the style's tiles z10-z16 in the background and re-render edited tiles")
    s.set_defaults(func=cmd_serve)

    sm = sub.add_parser("sample", help="(re)build the sample town in the configured store")
    sm.add_argument("--scale", type=float, default=1.0, help="N-times larger town (0.05 … 10+)")
    sm.add_argument("--seed", type=int, default=20261123)
    sm.set_defaults(func=cmd_sample)

    ld = sub.add_parser("load", help="import GeoJSON, GeoPackage, Shapefile, CSV, OSM (.osm/.pbf) or DXF into a "
                        "layer, or a GeoTIFF as the dem/ortho raster")
    ld.add_argument("file")
    ld.add_argument("--layer", help="target layer (omit with --preset to fill every layer the preset knows; not for --format epanet|swmm)")
    ld.add_argument("--format", choices=["auto", "epanet", "swmm"], default="auto",
                    help="epanet / swmm: a water (EPANET) or sewer (SWMM) .inp network into pipe_nodes + pipelines")
    ld.add_argument("--origin", help="epanet/swmm: lon,lat of the file's 0,0 when its coordinates are local metres")
    ld.add_argument("--prefix", help="epanet/swmm: prefix of the node and pipe codes (default EP- / SW-)")
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

    sc = sub.add_parser("scenes", help="3D: write the 3D Tiles tileset to disk")
    scsub = sc.add_subparsers(dest="scenes_command", required=True)
    se = scsub.add_parser("export", help="write tileset.json and every content GLB under DIR (static hosting)")
    se.add_argument("dir")
    se.add_argument("--layers", default=None, help="buildings,pipelines,pipe_nodes (default: all three)")
    se.set_defaults(func=cmd_scenes_export)

    tr = sub.add_parser("terrain", help="3D: quantized-mesh terrain for CesiumJS")
    trsub = tr.add_subparsers(dest="terrain_command", required=True)
    tre = trsub.add_parser("export", help="write layer.json and every terrain tile (gzipped) under DIR")
    tre.add_argument("dir")
    tre.add_argument("--no-normals", action="store_true", help="leave out the octvertexnormals extension")
    tre.set_defaults(func=cmd_terrain_export)

    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(func=cmd_migrate)
    si = sub.add_parser("simulate", help="publish a realistic day of device readings to MQTT")
    si.add_argument("--mqtt", help="broker URL (default TWIN_MQTT_URL, else mqtt://127.0.0.1:1883)")
    si.add_argument("--speed", type=float, default=600.0, help="simulated seconds per real second (600: a day in 2.4 min)")
    si.add_argument("--hours", type=float, default=24.0, help="length of the simulated span, ending now")
    si.add_argument("--step", type=float, default=300.0, help="seconds between two readings of a device")
    si.add_argument("--seed", type=int, default=20261123)
    si.set_defaults(func=cmd_simulate)
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
