"""The demo's synthetic HLS stream: real ffmpeg writes it, the app serves it, ffprobe accepts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from layers.demo_video import DemoStream


def ffprobe(path: Path) -> dict:
    r = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def running_stream(tmp_path_factory):
    home = tmp_path_factory.mktemp("video-home")
    stream = DemoStream(home / "video" / "demo").start()
    try:
        assert stream.wait_ready(40, segments=2), stream.error_output()
        yield home, stream
    finally:
        stream.stop()


def test_the_playlist_and_a_segment_are_served_and_the_segment_is_valid_mpeg_ts(running_stream, store,
                                                                                 client_for, tmp_path):
    home, _ = running_stream
    c = client_for(store, home=home)
    r = c.get("/video/demo/index.m3u8")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.headers["cache-control"] == "no-cache"
    lines = r.text.splitlines()
    assert lines[0] == "#EXTM3U" and any(x.startswith("#EXT-X-TARGETDURATION") for x in lines)
    segments = [x for x in lines if x and not x.startswith("#")]
    assert segments
    seg = c.get(f"/video/demo/{segments[-1]}")
    assert seg.status_code == 200 and seg.headers["content-type"] == "video/mp2t"
    out = tmp_path / "seg.ts"
    out.write_bytes(seg.content)
    info = ffprobe(out)
    assert info["format"]["format_name"] == "mpegts"
    assert float(info["format"]["duration"]) > 1.0
    video = [s for s in info["streams"] if s["codec_type"] == "video"][0]
    assert video["codec_name"] == "h264" and (video["width"], video["height"]) == (640, 360)


def test_the_stream_is_live_new_segments_keep_coming(running_stream):
    _, stream = running_stream
    first = stream.playlist.read_text()
    seq = int(next(x for x in first.splitlines() if x.startswith("#EXT-X-MEDIA-SEQUENCE")).split(":")[1])
    last = [x for x in first.splitlines() if x.endswith(".ts")][-1]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = stream.playlist.read_text()
        if [x for x in now.splitlines() if x.endswith(".ts")][-1] != last:
            break
        time.sleep(0.3)
    else:
        pytest.fail("no new segment in 20 s")
    assert stream.running and seq >= 0


def test_missing_streams_and_odd_file_names_answer_json(store, client_for, tmp_path):
    c = client_for(store, home=tmp_path)
    r = c.get("/video/nostream/index.m3u8")
    assert r.status_code == 404 and r.json()["code"] == "feature_not_found"
    for bad in ("ffmpeg.log", "index.m3u8.tmp", "..%2F..%2Fetc%2Fpasswd"):
        r = c.get(f"/video/demo/{bad}")
        assert r.status_code in (400, 404) and set(r.json()) == {"code", "message", "detail"}


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # ~11 s alone, ~25 s beside other tests (builds a town, starts ffmpeg)
def test_twin_demo_runs_ffmpeg_as_a_child_and_stops_it_with_itself(tmp_path):
    """`twin demo` (scale 0.05) serves /video/demo/index.m3u8 from its own ffmpeg; on SIGTERM both end."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TWIN_HOME": str(tmp_path)}
    env.pop("TWIN_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "gis_api.cli", "demo", "--scale", "0.05", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/video/demo/index.m3u8", timeout=2)
                if r.status_code == 200 and "#EXTINF" in r.text:
                    body = r.text
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert body, "the demo never served its stream"
        ffmpegs = [p for p in _children(proc.pid) if "ffmpeg" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(ffmpegs) == 1
        cams = httpx.get(f"http://127.0.0.1:{port}/cameras/cones?limit=1", timeout=10).json()
        hls = cams["features"][0]["properties"]["streams"]["hls"]
        assert hls == f"http://127.0.0.1:{port}/video/demo/index.m3u8"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        time.sleep(0.5)
        assert not _alive(ffmpegs[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
