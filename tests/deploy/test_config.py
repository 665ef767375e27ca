"""The deployment kit as shipped: nginx accepts the whole configuration (``nginx -t``), the compose
file names every service, and twin reads the client address from X-Forwarded-For the way
the nginx configuration sends it (the rightmost hop no trusted proxy vouches for)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gis_api.guard import client_ip

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.mark.parametrize("tile_cache", [True, False], ids=["as-shipped", "tile-cache-off"])
def test_shipped_nginx_configuration_passes_nginx_t(tmp_path: Path, tile_cache: bool) -> None:
    """deploy/nginx/nginx.conf with twin-site.conf (TLS, HTTP/2, redirect) as an operator installs it
    (the tile cache on), and with the tile cache turned off as twin-tile-cache.conf says; only the
    certificate, log, pid and cache paths point into a temporary directory."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is missing: ./run.sh test installs it (setup_nginx)"
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "logs").mkdir()
    twin_dir = conf / "twin"
    shutil.copytree(DEPLOY / "nginx", twin_dir)
    shutil.copy("/etc/nginx/mime.types", conf / "mime.types")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=twin",
                    "-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem")],
                   check=True, capture_output=True)
    for f in (conf / "twin" / "twin-site.conf", conf / "twin" / "nginx.conf"):
        f.write_text(f.read_text().replace("/etc/ssl/twin/", f"{tmp_path}/").replace("/var/log/nginx/", f"{tmp_path}/logs/")
                     .replace("/run/nginx.pid", f"{tmp_path}/nginx.pid"))
    shutil.move(twin_dir / "nginx.conf", conf / "nginx.conf")
    http, loc = twin_dir / "twin-http.conf", twin_dir / "twin-locations.conf"
    assert "\nproxy_cache_path /var/cache/nginx/twin-tiles " in http.read_text()  # on, not commented out
    http.write_text(http.read_text().replace("proxy_cache_path /var/cache/nginx/twin-tiles ", f"proxy_cache_path {tmp_path}/cache "))
    assert "\n    include twin/twin-tile-cache.conf;" in loc.read_text()
    if not tile_cache:
        loc.write_text(loc.read_text().replace("    include twin/twin-tile-cache.conf;", "    # include twin/twin-tile-cache.conf;"))
    r = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf / "nginx.conf"),
                        "-e", str(tmp_path / "logs/error.log")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


@pytest.fixture(scope="module")
def nginx_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx with the shipped twin-http.conf whose one location answers the tile cache's coding
    ($twin_tile_encoding) for the request's Accept-Encoding."""
    import socket
    import time

    import httpx

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = tmp_path_factory.mktemp("nginx-echo")
    (p / "logs").mkdir()
    conf = p / "conf"
    shutil.copytree(DEPLOY / "nginx", conf / "twin")
    http = conf / "twin" / "twin-http.conf"
    http.write_text(http.read_text().replace("proxy_cache_path /var/cache/nginx/twin-tiles ", f"proxy_cache_path {p}/cache "))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (conf / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\nevents {{}}\n"
        + "http {\n    include twin/twin-http.conf;\n    access_log off;\n"
        + "".join(f"    {k}_temp_path {p}/tmp_{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"    server {{\n        listen 127.0.0.1:{port};\n        location / {{ return 200 $twin_tile_encoding; }}\n    }}\n}}\n")
    proc = subprocess.Popen([nginx, "-p", str(p), "-c", str(conf / "nginx.conf"), "-e", str(p / "logs/error.log"),
                             "-g", "daemon off;"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _coding_asked(url: str, accept_encoding: str | None) -> str:
    """GET ``url`` with exactly this Accept-Encoding (None: no such header; http.client adds none)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", u.path, headers={} if accept_encoding is None else {"Accept-Encoding": accept_encoding})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


BROWSERS = ["gzip, deflate, br, zstd", "gzip, deflate, br", "gzip, br", "br, gzip", "gzip, deflate", "br", "gzip", "identity", "",
            "deflate", "br;q=0, gzip", "gzip;q=0", "gzip;q=0, br;q=0", "BR;Q=1.0, GZIP", "x-gzip", "gzip ;q=0.0, br ;q=1"]


@pytest.mark.parametrize("accept_encoding", [None, *BROWSERS])
def test_the_tile_cache_keys_tiles_by_the_coding_twin_would_send(nginx_echo: str, accept_encoding: str | None) -> None:
    """The coding in the nginx tile cache's key (twin-http.conf, map $twin_tile_encoding) is the one
    twin's own negotiation picks for what browsers send."""
    from gis_api.negotiation import choose_encoding

    assert _coding_asked(nginx_echo, accept_encoding) == choose_encoding(accept_encoding or None)


coding = st.sampled_from(["br", "gzip", "deflate", "identity", "zstd", "BR", "Gzip", "x-gzip", "brotli"])
weight = st.sampled_from(["", ";q=1", ";q=1.0", ";q=0", ";q=0.0", ";q=0.000", " ;q=0", ";q=0.5", ";q=0.001", ";Q=0"])
separator = st.sampled_from([", ", ",", " , "])


@given(elements=st.lists(st.tuples(coding, weight), max_size=5), sep=separator)
def test_the_tile_cache_never_asks_twin_for_a_refused_coding(nginx_echo: str, elements: list, sep: str) -> None:
    """Whatever a client sends, the coding nginx asks twin for (and keys the cached body by) is one
    the client accepts: br or gzip only when named with q > 0, else plain bytes; with no fractional
    preferences it is exactly twin's choice."""
    from gis_api.negotiation import accepted_codings, choose_encoding

    header = sep.join(name + w for name, w in elements)
    got = _coding_asked(nginx_echo, header)
    assert got in ("br", "gzip", "identity")
    if got != "identity":
        assert accepted_codings(header).get(got, 0) > 0, (header, got)
    if not any(w.strip(" ;").lower() in ("q=0.5", "q=0.001") for _, w in elements):
        assert got == choose_encoding(header or None), header


def test_compose_file_has_the_whole_stack() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"db", "redis", "nats", "mosquitto", "migrate", "twin1", "twin2", "nginx"} <= set(services)
    for name in ("twin1", "twin2"):
        env = services[name]["environment"]
        assert env["TWIN_RATE_LIMIT_REDIS"] == "true" and env["TWIN_HUB_URL"].startswith("nats://")
    # only one worker consumes MQTT (one persistent session); the hub carries readings to the other
    assert ("TWIN_MQTT_URL" in services["twin1"]["environment"]) != ("TWIN_MQTT_URL" in services["twin2"]["environment"])
    nginx_ip = ipaddress.ip_address(services["nginx"]["networks"]["twin"]["ipv4_address"])
    assert nginx_ip in ipaddress.ip_network(services["twin1"]["environment"]["TWIN_TRUSTED_PROXIES"])


TRUSTED = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/24")]
ip_text = st.ip_addresses(v=4).map(str)
junk = st.text(alphabet=st.characters(codec="latin-1", exclude_characters=","), max_size=20)


def scope(peer: str, *xff: str) -> dict:
    return {"client": (peer, 1234), "headers": [(b"x-forwarded-for", v.encode("latin-1")) for v in xff]}


@given(forged=st.lists(st.one_of(ip_text, junk), max_size=4), real=ip_text)
def test_a_client_cannot_pick_its_address_through_nginx(forged: list[str], real: str) -> None:
    """Whatever a client puts in X-Forwarded-For, nginx appends the address it saw; twin takes that one."""
    if any(ipaddress.ip_address(real) in n for n in TRUSTED):
        return  # a client on a proxy's own address is a proxy
    header = ", ".join([*forged, real])
    assert client_ip(scope("127.0.0.1", header), TRUSTED) == real
    # two proxies: the edge nginx (10.0.0.5) appended the client, the host's nginx appended the edge
    assert client_ip(scope("127.0.0.1", header, "10.0.0.5"), TRUSTED) == real


@given(peer=ip_text, header=st.text(alphabet=st.characters(codec="latin-1"), max_size=200))
def test_the_header_of_an_untrusted_peer_is_ignored(peer: str, header: str) -> None:
    if any(ipaddress.ip_address(peer) in n for n in TRUSTED):
        return
    assert client_ip(scope(peer, header), TRUSTED) == peer
    assert client_ip(scope(peer, header), []) == peer


def test_systemd_units_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the units (no unknown keys, no bad values); the only path
    changed is the twin executable, to this checkout's."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: ./run.sh test installs it (setup_nginx)"
    twin = Path(sys.executable).parent / "twin"
    assert twin.exists()
    for unit in ("twin-migrate.service", "twin@.service"):
        text = (DEPLOY / "systemd" / unit).read_text().replace("/opt/twin/.venv/bin/twin", str(twin))
        (tmp_path / unit.replace("@.", "@8001.")).write_text(text)
    r = subprocess.run([analyze, "verify", "--man=no", "./twin-migrate.service", "./twin@8001.service"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
