"""Every curl line of docs/analysis.md answers 200 on the sample town (both backends)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"
TOKEN = "docs-token"


def curl_lines() -> list[str]:
    return [ln.strip() for ln in DOC.read_text().splitlines() if ln.strip().startswith("curl ")]


def parse(line: str) -> tuple[str, str, dict | None, dict[str, str]]:
    args = shlex.split(line.replace("$TWIN_ADMIN_TOKEN", TOKEN))
    method, body, headers, url = "GET", None, {}, None
    it = iter(args[1:])
    for a in it:
        if a == "-X":
            method = next(it)
        elif a == "-d":
            body = json.loads(next(it))
        elif a == "-H":
            k, _, v = next(it).partition(": ")
            headers[k] = v
        elif a == "-o":
            next(it)
        elif a.startswith("http://"):
            url = re.sub(r"^http://127\.0\.0\.1:8000", "", a)
    assert url, line
    return method, url, body, headers


def test_every_example_answers(town_store, client_for):
    client = client_for(town_store, admin_token=TOKEN, home=town_store.raster_dir.parent)  # the town's DEM
    lines = curl_lines()
    assert len(lines) >= 20
    for line in lines:
        method, url, body, headers = parse(line)
        r = client.request(method, url, json=body, headers=headers)
        assert r.status_code == 200, (line, r.text[:300])
        assert r.content
