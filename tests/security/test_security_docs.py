"""The signing examples in docs/security.md work as written, against a real server process:
the Python one (standard library) and the JavaScript one (Node)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twin.security.accounts import Accounts

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _block(lang: str, after: str) -> str:
    text = DOC.read_text()
    start = text.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert m, f"no {lang} block after {after!r}"
    return m.group(1)


@pytest.fixture(scope="module")
def demo_server(town_store, town_settings, live_process_url):
    Accounts(town_store, town_settings).ensure_app("demo", "demo-secret", ["exchange"])
    return live_process_url


@pytest.mark.parametrize("backend", ["spatialite", "postgis"], indirect=True)
def test_python_example(demo_server):
    code = _block("python", "Python (standard library only)").replace("http://127.0.0.1:8000", demo_server)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()[:2]
    assert "'success': True" in first and "'code': 0" in first
    assert "和平区" in second


@pytest.mark.parametrize("backend", ["spatialite"], indirect=True)
def test_javascript_example(demo_server):
    node = shutil.which("node")
    assert node, "node is installed by run.sh (the viewer's npm packages need it)"
    code = _block("js", "JavaScript (Node 18+").replace("http://127.0.0.1:8000", demo_server)
    out = subprocess.run([node, "-e", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "success: true" in out.stdout and "code: 0" in out.stdout
