"""Peer encoder for bench/terrain.py: quantized-mesh-encoder (PyPI) on the same meshes.

Runs inside ``bench/.venv-qme`` (``bench/setup.sh``); reads the meshes twin built from an
``.npz`` and prints one JSON line: per-tile encode+gzip time and sizes.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import time

import numpy as np
import quantized_mesh_encoder as qme


def main(path: str) -> None:
    data = np.load(path)
    n = int(data["count"])
    times, sizes = [], []
    for i in range(n):
        pos, tri, bounds = data[f"p{i}"], data[f"t{i}"], tuple(data[f"b{i}"])
        t0 = time.perf_counter()
        buf = io.BytesIO()
        ext = qme.VertexNormalsExtension(positions=pos, indices=tri)
        qme.encode(buf, pos, tri, bounds=bounds, sphere_method="naive", extensions=[ext])
        body = gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)
        times.append(time.perf_counter() - t0)
        sizes.append(len(body))
    times.sort()
    print(json.dumps({"n": n, "p50_ms": times[n // 2] * 1000, "p95_ms": times[min(n - 1, round(0.95 * (n - 1)))] * 1000,
                      "kb": sum(sizes) / n / 1024, "version": qme.__version__}))


if __name__ == "__main__":
    main(sys.argv[1])
