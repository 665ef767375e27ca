"""SWMM import through swmm-api: inverts from node inverts and link offsets, gravity flow, bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from twin.analysis.network import build_networks
from twin.analysis.source import features_in_bbox
from twin.analysis.swmm import load_swmm, read_swmm
from twin.errors import LoadFailed

SMALL = Path(__file__).parent / "data" / "small_sewer.inp"
ORIGIN = (120.9, 31.7)
WORLD = (-180, -90, 180, 90)


def test_load_swmm_inverts_offsets_and_flow(empty_store):
    counts = load_swmm(empty_store, SMALL, origin=ORIGIN)
    assert counts == {"pipe_nodes": 5, "pipelines": 4}
    pipes = features_in_bbox(empty_store, "pipelines", WORLD, cap=100)
    nodes = features_in_bbox(empty_store, "pipe_nodes", WORLD, cap=100)
    c1 = next(p for p in pipes.properties if p["code"] == "SW-C1")
    assert (c1["start_invert_m"], c1["end_invert_m"], c1["diameter_mm"]) == (3.0, 2.9, 300.0)  # 2.8 + 0.1 offset
    assert c1["start_depth_m"] == pytest.approx(5.0 - 3.0 - 0.3) and c1["gravity"] is True
    j1 = next(p for p in nodes.properties if p["code"] == "SW-J1")
    assert (j1["invert_elev_m"], j1["ground_elev_m"], j1["kind"]) == (3.0, 5.0, "manhole")
    net = build_networks(pipes, nodes)["sewage"]
    assert not net.findings
    down, reached = net.trace("SW-C1", "downstream")
    # C4 is reverse graded, so by its inverts it drains J3 into J4: the trace follows the inverts
    assert down == ["SW-C1", "SW-C2", "SW-C3", "SW-C4"] and {"SW-O1", "SW-J4"} <= set(reached)
    assert net.pipes["SW-C4"].reverse_graded and net.pipes["SW-C4"].flow_to == "SW-J4"
    empty_store.clear()


def test_us_units_are_feet(tmp_path):
    us = tmp_path / "us.inp"
    us.write_text(SMALL.read_text().replace("LPS", "CFS"))
    _, pipes = read_swmm(us, origin=ORIGIN)
    c1 = next(p for p in pipes if p["code"] == "SW-C1")
    assert c1["start_invert_m"] == pytest.approx(3.0 * 0.3048) and c1["diameter_mm"] == pytest.approx(91.4, abs=0.1)


@pytest.mark.parametrize("edit", [
    ("J1      3.0", "J1      abc"),           # a broken number
    ("O1      150   0\n", ""),                 # a node without coordinates
    ("C1      J1    J2", "C1      J1    JX"),  # a link to an unknown node
])
def test_bad_swmm_files_leave_the_layers_alone(empty_store, tmp_path, edit):
    bad = tmp_path / "bad.inp"
    bad.write_text(SMALL.read_text().replace(*edit))
    with pytest.raises(LoadFailed):
        load_swmm(empty_store, bad, origin=ORIGIN)
    assert empty_store.summary("pipelines").count == 0 and empty_store.summary("pipe_nodes").count == 0


def test_cli_loads_a_swmm_file(tmp_path):
    env = {**os.environ, "TWIN_HOME": str(tmp_path)}
    env.pop("TWIN_DATABASE_URL", None)
    r = subprocess.run([sys.executable, "-m", "gis_api.cli", "load", str(SMALL), "--format", "swmm", "--origin",
                        "120.9,31.7", "--prefix", "WS-"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"pipelines": 4' in r.stdout
