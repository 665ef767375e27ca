"""EPANET import through wntr, on wntr's own example networks; isolation segments held to
wntr's valve segmentation (``wntr.metrics.topographic.valve_segments``), on both backends."""

from __future__ import annotations

import os

import pytest
import shapely
import wntr

from twin.analysis.epanet import load_epanet, read_epanet
from twin.analysis.network import build_networks
from twin.analysis.source import features_in_bbox
from twin.errors import InvalidParameter, LoadFailed

NETS = os.path.join(os.path.dirname(wntr.__file__), "library", "networks")
TESTNETS = os.path.join(os.path.dirname(wntr.__file__), "tests", "networks_for_testing")
ORIGIN = (120.9, 31.7)
WORLD = (-180, -90, 180, 90)


def _with_valves(nodes, pipes, valve_layer, prefix="EP-"):
    """Put wntr's valve layer into twin's rows: a valve on link L protecting node N becomes a valve
    node between N and the rest of L (a stub pipe N–valve, L re-ended at the valve)."""
    by_code = {p["code"]: p for p in pipes}
    for k, (link, node) in enumerate(zip(valve_layer["link"], valve_layer["node"], strict=True)):
        n_code = prefix + node
        cand = [by_code[c] for c in (prefix + link, f"{prefix}{link}/a", f"{prefix}{link}/b") if c in by_code]
        pipe = next(p for p in cand if n_code in (p["start_node_code"], p["end_node_code"]))
        v = f"V{k}"
        end = "start_node_code" if pipe["start_node_code"] == n_code else "end_node_code"
        pipe[end] = v
        at = pipe["geom"].coords[0 if end == "start_node_code" else -1]
        nodes.append({"code": v, "kind": "valve", "utility": "water_supply", "geom": shapely.Point(at)})
        stub = {**pipe, "code": f"stub{k}", "start_node_code": n_code, "end_node_code": v,
                "geom": shapely.LineString([at, (at[0] + 1e-7, at[1])])}
        pipes.append(stub)
        by_code[stub["code"]] = stub
    return nodes, pipes


def _link_name(code: str, prefix: str = "EP-") -> str | None:
    if code.startswith("stub"):
        return None
    return code[len(prefix):].removesuffix("/a").removesuffix("/b")


@pytest.mark.parametrize("net", ["Net1.inp", "Net3.inp"])
def test_isolation_segments_agree_with_wntr(empty_store, net):
    path = os.path.join(NETS, net)
    wn = wntr.network.WaterNetworkModel(path)
    layer = wntr.network.generate_valve_layer(wn, "strategic", 2, seed=123)
    _, link_seg, _ = wntr.metrics.topographic.valve_segments(wn.to_graph(), layer)
    nodes, pipes = _with_valves(*read_epanet(path, origin=ORIGIN), layer)
    empty_store.write_features("pipe_nodes", nodes)
    empty_store.write_features("pipelines", pipes)
    net_ = build_networks(features_in_bbox(empty_store, "pipelines", WORLD, cap=10**6),
                          features_in_bbox(empty_store, "pipe_nodes", WORLD, cap=10**6))["water_supply"]
    assert not [f for f in net_.findings if f.kind in ("missing_node", "snapped_end")]
    checked = 0
    for code in sorted(net_.pipes):
        name = _link_name(code)
        if name is None:
            continue
        iso = net_.isolate(code)
        ours = {n for c in iso.isolated_pipes if (n := _link_name(c)) is not None}
        theirs = set(link_seg.index[link_seg == link_seg[name]])
        assert ours == theirs, (code, sorted(ours ^ theirs)[:10])
        checked += 1
    assert checked >= len(wn.link_name_list)
    empty_store.clear()


def test_load_epanet_writes_both_layers_in_one_transaction(empty_store):
    path = os.path.join(NETS, "Net3.inp")
    counts = load_epanet(empty_store, path, origin=ORIGIN)
    wn = wntr.network.WaterNetworkModel(path)
    n_special = len(wn.pump_name_list) + len(wn.valve_name_list)
    assert counts == {"pipe_nodes": wn.num_nodes + n_special, "pipelines": len(wn.pipe_name_list) + 2 * n_special}
    kinds = {p["kind"] for p in features_in_bbox(empty_store, "pipe_nodes", WORLD, cap=10**6).properties}
    assert {"junction", "reservoir", "tank", "pump_station"} <= kinds
    # the same codes again: refused, and nothing half-written
    with pytest.raises(LoadFailed, match="clash"):
        load_epanet(empty_store, path, origin=ORIGIN)
    assert empty_store.summary("pipelines").count == counts["pipelines"]
    empty_store.clear()


def test_bad_epanet_files_are_refused(empty_store, tmp_path):
    for name in ("bad_syntax.inp", "bad_values.inp"):
        with pytest.raises(LoadFailed):
            load_epanet(empty_store, os.path.join(TESTNETS, name), origin=ORIGIN)
    broken = tmp_path / "broken.inp"
    broken.write_text("[JUNCTIONS]\nJ1  abc  0\n[NOSUCHSECTION]\nx\n[END]\n")
    with pytest.raises(LoadFailed):
        load_epanet(empty_store, broken, origin=ORIGIN)
    with pytest.raises(InvalidParameter):
        read_epanet(os.path.join(NETS, "Net1.inp"))
    assert empty_store.summary("pipe_nodes").count == 0


def test_cli_loads_an_epanet_file(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "TWIN_HOME": str(tmp_path)}
    env.pop("TWIN_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "gis_api.cli", "load", os.path.join(NETS, "Net1.inp"), "--format", "epanet",
           "--origin", "120.9,31.7"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"pipelines"' in r.stdout
    bad = subprocess.run([*cmd[:-2], "--origin", "999,0"], capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0 and "origin" in bad.stderr
