#!/usr/bin/env bash
# twin quick start. Two commands, from a fresh clone on Debian/Ubuntu:
#   ./run.sh demo   install what is needed, build the sample town, serve API + viewer
#   ./run.sh test   install what is needed, start PostgreSQL/PostGIS and Redis, run the suite
# Options after the command go to `twin demo` or to pytest respectively.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  # Install Debian packages that are missing (apt-get update only when needed).
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_python() {
  if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    apt_install python3 python3-venv python3-dev
    PY=python3
  fi
  "$PY" -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
  local stamp="$VENV/.twin-installed" want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python packages into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e ".[dev]"
    echo "$want" > "$stamp"
  fi
}

setup_spatialite() {
  apt_install libsqlite3-mod-spatialite
  apt_install fonts-wqy-microhei   # CJK font: map label glyphs (tiles/glyphs.py) and screenshots
  apt_install osmium-tool gdal-bin # loading tests make .osm.pbf extracts (osmium); bench/load.py compares with ogr2ogr
}

npm_ci() {  # npm_ci DIR LABEL: `npm ci` in DIR when its package-lock.json changed since the last install
  command -v npm >/dev/null || apt_install nodejs npm
  local dir="$1" stamp want
  stamp="$dir/node_modules/.twin-installed"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing $2 (npm ci in ${dir#"$ROOT"/})"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
  fi
}

setup_viewer() {
  # MapLibre, CesiumJS, hls.js, Chart.js for the web pages, from the npm registry (gis_api/static/package-lock.json).
  npm_ci "$ROOT/gis_api/static" "the viewer's browser libraries"
}

setup_browser() {
  # Debian's Chromium for the viewer tests (Playwright drives it; no browser download).
  command -v chromium >/dev/null || apt_install chromium
  apt_install fonts-wqy-microhei   # Chinese glyphs for names and labels in screenshots
  export TWIN_TEST_CHROMIUM="${TWIN_TEST_CHROMIUM:-$(command -v chromium)}"
}

setup_node_tools() {
  # Node tools the tests run (the Khronos glTF Validator), from the npm registry (tools/node/package-lock.json).
  npm_ci "$ROOT/tools/node" "the test tools"
}

setup_video() {
  # Debian's ffmpeg: `twin demo` publishes a synthetic HLS camera stream with it; tests run it and ffprobe.
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || apt_install ffmpeg
}

pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1; }

setup_postgis() {
  if [ -z "$(pg_version)" ]; then
    apt_install postgresql postgresql-contrib
  fi
  local v; v=$(pg_version)
  apt_install "postgresql-$v-postgis-3" postgresql-client
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL $v"
    if command -v pg_ctlcluster >/dev/null; then
      [ -d "/etc/postgresql/$v/main" ] || $SUDO pg_createcluster "$v" main >/dev/null
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start || $SUDO pg_ctlcluster "$v" main start
    fi
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  # Tests connect as postgres over TCP; use trust if allowed, else set a password.
  if [ -z "${TWIN_TEST_POSTGRES_URL:-}" ]; then
    if psql -h 127.0.0.1 -U postgres -d postgres -w -Atc 'select 1' >/dev/null 2>&1; then
      export TWIN_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:5432/postgres"
    else
      log "setting a password for the postgres role (local test server)"
      $SUDO -u postgres psql -q -c "ALTER ROLE postgres PASSWORD 'postgres'" 2>/dev/null \
        || su postgres -c "psql -q -c \"ALTER ROLE postgres PASSWORD 'postgres'\""
      export TWIN_TEST_POSTGRES_URL="postgresql://postgres:postgres@127.0.0.1:5432/postgres"
    fi
  fi
}

as_postgres() {  # run a command as the postgres OS user (root: runuser; otherwise sudo)
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

setup_replica() {
  # A real streaming replica of the test server for the read-replica tests (tests/scale/test_replica.py):
  # cluster "$v/replica" on port 5433, made with pg_basebackup -R from 5432 (a replication role, a
  # pg_hba line and a replication slot on the primary; the slot keeps at most 2 GB of WAL, so a stopped
  # replica cannot fill the primary's disk). Idempotent: a replica in step is only started; one whose
  # slot is gone or lost (it fell more than 2 GB behind) is made again.
  local v port=5433 role=twin_replicator pass=twin-replicator slot=twin_test_replica hba wal
  v=$(pg_version)
  local data="/var/lib/postgresql/$v/replica" pg="$TWIN_TEST_POSTGRES_URL"
  wal=$(psql "$pg" -Atc "select wal_status from pg_replication_slots where slot_name = '$slot'")
  if [ -z "$wal" ] || [ "$wal" = lost ] || ! $SUDO test -f "$data/standby.signal"; then
    log "creating a streaming replica of PostgreSQL $v on port $port (pg_basebackup)"
    psql "$pg" -q -v ON_ERROR_STOP=1 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role WITH REPLICATION LOGIN PASSWORD '$pass';
  END IF;
END \$\$;
SQL
    hba=$(psql "$pg" -Atc 'show hba_file')
    if ! $SUDO grep -q "^host replication $role 127.0.0.1/32" "$hba"; then
      echo "host replication $role 127.0.0.1/32 scram-sha-256" | $SUDO tee -a "$hba" >/dev/null
    fi
    if [ "$(psql "$pg" -Atc 'show max_slot_wal_keep_size')" = "-1" ]; then
      psql "$pg" -qc "ALTER SYSTEM SET max_slot_wal_keep_size = '2GB'"
    fi
    psql "$pg" -qAtc 'select pg_reload_conf()' >/dev/null
    [ -d "/etc/postgresql/$v/replica" ] || $SUDO pg_createcluster "$v" replica -p $port >/dev/null
    $SUDO pg_ctlcluster "$v" replica stop >/dev/null 2>&1 || true
    psql "$pg" -qAtc "select pg_drop_replication_slot('$slot') from pg_replication_slots where slot_name = '$slot'" >/dev/null
    $SUDO find "$data" -mindepth 1 -delete
    as_postgres env PGPASSWORD=$pass pg_basebackup -h 127.0.0.1 -p 5432 -U $role -D "$data" -R -C -S $slot -X stream -c fast
    # clients reach the replica as they reach the primary (same roles, same pg_hba rules)
    $SUDO cp "$hba" "/etc/postgresql/$v/replica/pg_hba.conf"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p $port; then
    log "starting the PostgreSQL replica on port $port"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" replica start || $SUDO pg_ctlcluster "$v" replica start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p $port && break; sleep 1; done
  fi
  # same credentials as the primary (the replica is a copy of it), another port
  export TWIN_TEST_REPLICA_URL="${TWIN_TEST_REPLICA_URL:-${pg/:5432\//:$port/}}"
  export TWIN_TEST_REPLICA_CLUSTER="${TWIN_TEST_REPLICA_CLUSTER:-$v/replica}"  # the tests stop and start it
}

setup_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  export TWIN_TEST_REDIS_URL="${TWIN_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
}

setup_mqtt() {
  # Mosquitto for the live layers' MQTT ingest (persistence on, so QoS 1 sessions survive a restart).
  command -v mosquitto >/dev/null || apt_install mosquitto
  command -v mosquitto_pub >/dev/null || apt_install mosquitto-clients
  if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    log "starting Mosquitto"
    local dir="${TWIN_HOME:-$HOME/.twin}/mosquitto"
    mkdir -p "$dir"
    printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 100000\nuser root\n' \
      "$dir" > "$dir/mosquitto.conf"
    [ "$(id -u)" -eq 0 ] || sed -i '/^user root$/d' "$dir/mosquitto.conf"
    mosquitto -d -c "$dir/mosquitto.conf"
    for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.5; done
  fi
  export TWIN_TEST_MQTT_URL="${TWIN_TEST_MQTT_URL:-mqtt://127.0.0.1:1883}"
}

setup_nats() {
  # NATS (with JetStream) as the alternative live-hub backend; the tests use it.
  command -v nats-server >/dev/null || apt_install nats-server
  if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    log "starting NATS"
    local dir="${TWIN_HOME:-$HOME/.twin}/nats"
    mkdir -p "$dir"
    nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$dir" >"$dir/nats.log" 2>&1 &
    for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.5; done
  fi
  export TWIN_TEST_NATS_URL="${TWIN_TEST_NATS_URL:-nats://127.0.0.1:4222}"
}

setup_nginx() {
  # Debian's nginx for the multi-host test (tests/deploy: started as a child process with its own
  # config and prefix, never as the system service) and bench/nginx.py.
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
  command -v openssl >/dev/null || apt_install openssl  # the test makes a self-signed certificate
  command -v systemd-analyze >/dev/null || apt_install systemd  # tests/deploy verifies the units
}

cmd=${1:-help}
shift || true
case "$cmd" in
  demo)
    setup_spatialite
    setup_python
    setup_viewer
    setup_video
    setup_mqtt
    export TWIN_MQTT_URL="${TWIN_MQTT_URL:-mqtt://127.0.0.1:1883}"
    exec "$VENV/bin/twin" demo "$@"
    ;;
  test)
    setup_spatialite
    setup_python
    setup_viewer
    setup_browser
    setup_node_tools
    setup_video
    setup_postgis
    setup_replica
    setup_redis
    setup_mqtt
    setup_nats
    setup_nginx
    log "static checks (ruff, mypy on the core)"
    "$VENV/bin/ruff" check .
    "$VENV/bin/mypy"
    log "running the test suite (SpatiaLite and PostGIS)"
    set +e
    "$VENV/bin/python" -m pytest -m "not slow" -n 2 -p no:cacheprovider "$@"
    rc=$?
    set -e
    [ $rc -eq 5 ] && { echo "no tests were collected" >&2; exit 1; }
    exit $rc
    ;;
  *)
    echo "usage: ./run.sh demo [--port 8000]   |   ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
