"""A synthetic live video stream for the demo: ffmpeg's test pattern with a running clock, as HLS.

``twin demo`` starts one :class:`DemoStream` (``<TWIN_HOME>/video/demo/index.m3u8``, served by the
app at ``/video/demo/index.m3u8``) as a child process and stops it when it stops; every sample
camera lists it as its HLS URL, so a camera in the viewer plays real, moving video without a
camera or a media server. The clock (Beijing time) shows the stream is live, not a loop.

ffmpeg is Debian's (``run.sh`` installs it). Segments are H.264 in MPEG-TS, two seconds each, a
keyframe at every segment start; old segments are deleted, so the folder stays small however long
the demo runs. On Linux the child gets SIGTERM if twin dies without cleaning up (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from twin.errors import TwinError


class VideoUnavailable(TwinError):
    code = "video_unavailable"


class DemoStream:
    """One ffmpeg process writing an HLS test stream into ``out_dir``."""

    def __init__(self, out_dir: Path, *, label: str = "twin demo", size: str = "640x360", fps: int = 15,
                 segment_s: int = 2, list_size: int = 6, ffmpeg: str | None = None):
        self.out_dir = Path(out_dir)
        self.label = label
        self.size, self.fps, self.segment_s, self.list_size = size, fps, segment_s, list_size
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg") or "ffmpeg"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def playlist(self) -> Path:
        return self.out_dir / "index.m3u8"

    def command(self) -> list[str]:
        label = "".join(ch for ch in self.label if ch.isalnum() or ch in " -_.")  # nothing drawtext would parse
        text = f"{label}  %{{localtime\\:%Y-%m-%d %T}} CST  frame %{{n}}"
        overlay = (f"drawtext=text='{text}':fontcolor=white:fontsize=22:box=1:boxcolor=black@0.6:"
                   "boxborderw=8:x=16:y=h-th-24")
        gop = self.fps * self.segment_s
        return [
            self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size={self.size}:rate={self.fps}",
            "-vf", overlay,
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", "500k",
            "-f", "hls", "-hls_time", str(self.segment_s), "-hls_list_size", str(self.list_size),
            "-hls_flags", "delete_segments+independent_segments+temp_file",
            "-hls_segment_filename", str(self.out_dir / "seg%06d.ts"),
            str(self.playlist),
        ]

    def start(self) -> DemoStream:
        if shutil.which(self.ffmpeg) is None:
            raise VideoUnavailable(f"ffmpeg not found ({self.ffmpeg}); install Debian's ffmpeg (run.sh does)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for old in self.out_dir.glob("*"):  # segments of an earlier run would confuse players
            if old.suffix in (".ts", ".m3u8", ".tmp", ".log"):
                old.unlink(missing_ok=True)
        log = (self.out_dir / "ffmpeg.log").open("wb")
        env = {**os.environ, "TZ": "Asia/Shanghai"}
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 20.0, segments: int = 1) -> bool:
        """True once the playlist lists ``segments`` segments; False on timeout or if ffmpeg died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                if self.playlist.read_text().count("#EXTINF") >= segments:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def error_output(self) -> str:
        try:
            return (self.out_dir / "ffmpeg.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)

    def __enter__(self) -> DemoStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


__all__ = ["DemoStream", "VideoUnavailable"]
