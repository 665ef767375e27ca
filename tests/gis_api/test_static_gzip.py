"""Static files go out gzipped from a memory cache (gis_api/static_files.py): the same bytes the
gzip middleware sent, compressed once per file version, not per request."""

from __future__ import annotations

import gzip

import pytest


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from gis_api.app import create_app
    from twin.settings import TwinSettings

    with TestClient(create_app(TwinSettings(home=tmp_path_factory.mktemp("home"), first_view_warm=""))) as c:
        yield c


def test_a_library_goes_gzipped_once_and_plain_to_who_asks(client, monkeypatch):
    import gis_api.static_files as sf

    url = "/static/viewer.js"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    gz = client.get(url, headers={"Accept-Encoding": "gzip, deflate"})
    assert plain.status_code == gz.status_code == 200
    assert "content-encoding" not in plain.headers and gz.headers["content-encoding"] == "gzip"
    assert gz.content == plain.content  # httpx decodes the gzip body
    assert "accept-encoding" in gz.headers["vary"].lower() and gz.headers["etag"] == plain.headers["etag"]
    assert gz.headers["content-type"].startswith("text/javascript")
    # the second request is served from the cache: no compression
    monkeypatch.setattr(sf.zlib, "compressobj", lambda *a: pytest.fail("compressed again"))
    again = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert again.headers["content-encoding"] == "gzip" and again.content == plain.content
    # a revalidation is a 304, a HEAD and a range request are StaticFiles' own answers
    assert client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": gz.headers["etag"]}).status_code == 304
    head = client.head(url, headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and "content-encoding" not in head.headers
    part = client.get(url, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == plain.content[:10]


def test_a_changed_file_is_compressed_again(tmp_path):
    import os

    from gis_api.static_files import _GzipCache

    f = tmp_path / "a.js"
    f.write_text("let a = 1;\n" * 500)
    cache = _GzipCache(max_bytes=10_000)
    first = cache.get(str(f), os.stat(f))
    assert gzip.decompress(first) == f.read_bytes()
    f.write_text("let b = 2;\n" * 600)
    os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns + 10**9))
    assert gzip.decompress(cache.get(str(f), os.stat(f))) == f.read_bytes()
