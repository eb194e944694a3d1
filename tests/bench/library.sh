#!/usr/bin/env bash
# On-demand benchmark of the library's local paths. Never run in CI; loopback only, one temp dir.
#
#   bash tests/bench/library.sh [--size-mib N] [--runs N]
#
# Measures, as ratios against anchors taken in the same run:
#  - an upload through PVE's upload endpoint (multipart body streamed into the storage, hashed on
#    the way; request -> TASK OK) against PVE's path: the body spooled to a temp file with an MD5
#    on the way (as pve-http-server does), `cp` to the storage, then a second SHA-256 pass;
#  - adopting a file copied in by hand (the daemon's first scan reads and records it) against
#    `sha256sum` of the same file;
#  - serving the volume (`GET /files/...` on the plain-HTTP listener, read with `curl -o
#    /dev/null`) against nginx serving the same file.
# Defaults: 2048 MiB, 3 runs, reported as median and range.
set -euo pipefail

SIZE_MIB=2048
RUNS=3
while [ $# -gt 0 ]; do
    case $1 in
        --size-mib) SIZE_MIB=${2:?--size-mib needs a number}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || { echo "--size-mib must be a positive integer" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=python3
[ -x "$ROOT/tests/.venv/bin/python" ] && PY=$ROOT/tests/.venv/bin/python
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
for cmd in curl perl sha256sum openssl "$PY"; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "missing command: $cmd" >&2; exit 1; }
done

log "cargo build --release"
(cd "$ROOT" && cargo build --release >&2)
BIN=$ROOT/target/release/isolib

TMP=$(mktemp -d "${TMPDIR:-/tmp}/isolib-libbench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/bench/common.sh
. "$HERE/common.sh"

SRC=$TMP/src
STORE=$TMP/store
SPOOL=$TMP/spool
mkdir -p "$SRC" "$STORE/template/iso" "$SPOOL" "$TMP/state"
FILE=$SRC/image.iso
SIZE=$((SIZE_MIB * 1024 * 1024))
avail_mib=$(df -Pm "$TMP" | awk 'NR==2 { print $4 }')
if [ $((SIZE_MIB * 4)) -gt $((avail_mib * 9 / 10)) ]; then
    echo "not enough space in $TMP: ${avail_mib} MiB free, need about $((SIZE_MIB * 4)) MiB" >&2
    exit 1
fi
log "generating $SIZE_MIB MiB of random data"
head -c "$SIZE" /dev/urandom > "$FILE"
SHA=$(sha256sum "$FILE" | cut -c1-64)
sync

export BENCH_NODE=bench BENCH_TOKEN='root@pam!bench'
BENCH_SECRET=$("$PY" -c 'import uuid; print(uuid.uuid4())')
export BENCH_SECRET
printf 'dir: local\n\tpath %s\n\tcontent iso,vztmpl,import\n' "$STORE" > "$TMP/storage.cfg"
printf 'user:root@pam:1:0:::root@localhost:::\ntoken:root@pam!bench:0:0::\n' > "$TMP/user.cfg"
printf '%s %s\n' "$BENCH_TOKEN" "$BENCH_SECRET" > "$TMP/token.cfg"
chmod 600 "$TMP/token.cfg"
D_PORT=$(free_port)
H_PORT=$(free_port)
D_PID=
start_daemon() {
    "$BIN" serve --node "$BENCH_NODE" --listen "127.0.0.1:$D_PORT" --tls false \
        --state-dir "$TMP/state" --storage-cfg "$TMP/storage.cfg" --user-cfg "$TMP/user.cfg" \
        --token-cfg "$TMP/token.cfg" --auth-fail-delay 0 --pve-dir none \
        --background-bwlimit 0 --catalog-scan-interval 3600 --http-listen "127.0.0.1:$H_PORT" \
        >>"$TMP/daemon.log" 2>&1 </dev/null &
    D_PID=$!
    PIDS+=("$D_PID")
}
stop_daemon() { kill "$D_PID"; wait "$D_PID" 2>/dev/null || true; }
settle() { rm -rf "$STORE"/template/iso/* "$STORE"/template/iso/.isolib-catalog "$SPOOL"/* 2>/dev/null || true; sync; }

S_PORT=$(free_port)
"$PY" "$HERE/helper.py" spool "$S_PORT" "$SPOOL" &
S_PID=$!
PIDS+=("$S_PID")
wait_port "$S_PORT" "$S_PID" spool

start_daemon
wait_port "$D_PORT" "$D_PID" isolib || { cat "$TMP/daemon.log" >&2; exit 1; }

T_UP_ALL=()
T_PVE_ALL=()
RSS_MIB=0
for run in $(seq 1 "$RUNS"); do
    settle
    log "run $run/$RUNS: isolib upload"
    r=$("$PY" "$HERE/helper.py" upload "$D_PORT" "$FILE" up.iso "$D_PID")
    [ "$(json "$r" status)" = OK ] || { echo "upload failed: $r" >&2; exit 1; }
    [ "$(sha256sum "$STORE/template/iso/up.iso" | cut -c1-64)" = "$SHA" ] || { echo "upload differs" >&2; exit 1; }
    T_UP_ALL+=("$(json "$r" "'%.3f' % seconds")")
    RSS_MIB=$(max "$RSS_MIB" "$(json "$r" "'%.1f' % (max(rss_peak_kib, hwm_kib) / 1024)")")

    settle
    log "run $run/$RUNS: PVE's path (spool with MD5, cp, SHA-256 pass)"
    s=$EPOCHREALTIME
    curl -s -o /dev/null -X POST -T "$FILE" -H 'Expect:' -H 'Content-Type: application/octet-stream' "http://127.0.0.1:$S_PORT/"
    spooled=$(ls "$SPOOL"/pveupload-* | tail -1)
    cp -- "$spooled" "$STORE/template/iso/pve.iso"
    perl -MDigest::SHA -e 'my $d = Digest::SHA->new(256); open(my $fh, "<", $ARGV[0]) or die;
        binmode $fh; $d->addfile($fh); print $d->hexdigest' "$STORE/template/iso/pve.iso" >/dev/null
    rm -f "$spooled"
    T_PVE_ALL+=("$(since "$s")")
done
read -r T_UP T_UP_MIN T_UP_MAX < <(stats "${T_UP_ALL[@]}")
read -r T_PVE T_PVE_MIN T_PVE_MAX < <(stats "${T_PVE_ALL[@]}")

log "serving the uploaded volume: isolib's /files/ against nginx"
settle
r=$("$PY" "$HERE/helper.py" upload "$D_PORT" "$FILE" up.iso "$D_PID")
[ "$(json "$r" status)" = OK ] || { echo "upload failed: $r" >&2; exit 1; }
curl -s -o /dev/null -X PUT -H "Authorization: PVEAPIToken=$BENCH_TOKEN=$BENCH_SECRET" \
    --data access=public "http://127.0.0.1:$D_PORT/api2/json/nodes/$BENCH_NODE/storage/local/content/local:iso%2Fup.iso"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
N_PORT=$(free_port)
mkdir -p "$TMP/nginx"
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root $(id -gn root);"
cat > "$TMP/nginx/nginx.conf" <<NGINX
$user_line
worker_processes auto;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    sendfile on;
    server { listen 127.0.0.1:$N_PORT; location / { root $STORE/template/iso; } }
}
NGINX
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" </dev/null >/dev/null 2>&1 &
N_PID=$!
PIDS+=("$N_PID")
wait_port "$N_PORT" "$N_PID" nginx
# The upload left the file out of the page cache (as every writer does); both servers read it
# from there, so it is read in once first.
cat "$STORE/template/iso/up.iso" >/dev/null
T_SRV_ALL=()
T_NGX_ALL=()
for run in $(seq 1 "$RUNS"); do
    s=$EPOCHREALTIME
    curl -sf -o /dev/null "http://127.0.0.1:$H_PORT/files/local/iso/up.iso" || { echo "isolib did not serve" >&2; exit 1; }
    T_SRV_ALL+=("$(since "$s")")
    s=$EPOCHREALTIME
    curl -sf -o /dev/null "http://127.0.0.1:$N_PORT/up.iso" || { echo "nginx did not serve" >&2; exit 1; }
    T_NGX_ALL+=("$(since "$s")")
done
read -r T_SRV T_SRV_MIN T_SRV_MAX < <(stats "${T_SRV_ALL[@]}")
read -r T_NGX T_NGX_MIN T_NGX_MAX < <(stats "${T_NGX_ALL[@]}")
stop_daemon

T_AD_ALL=()
T_SUM_ALL=()
T_SSL_ALL=()
for run in $(seq 1 "$RUNS"); do
    settle
    cp "$FILE" "$STORE/template/iso/byhand.iso"
    sync
    log "run $run/$RUNS: sha256sum"
    s=$EPOCHREALTIME
    sha256sum "$STORE/template/iso/byhand.iso" >/dev/null
    T_SUM_ALL+=("$(since "$s")")
    s=$EPOCHREALTIME
    openssl dgst -sha256 "$STORE/template/iso/byhand.iso" >/dev/null
    T_SSL_ALL+=("$(since "$s")")
    log "run $run/$RUNS: adoption at the daemon's first scan"
    s=$EPOCHREALTIME
    start_daemon
    record=$STORE/template/iso/.isolib-catalog/byhand.iso.json
    while [ ! -f "$record" ]; do
        kill -0 "$D_PID" 2>/dev/null || { cat "$TMP/daemon.log" >&2; exit 1; }
        sleep 0.01
    done
    T_AD_ALL+=("$(since "$s")")
    grep -q "\"sha256\": \"$SHA\"" "$record" || { echo "adoption recorded another hash" >&2; exit 1; }
    stop_daemon
done
read -r T_AD T_AD_MIN T_AD_MAX < <(stats "${T_AD_ALL[@]}")
read -r T_SUM T_SUM_MIN T_SUM_MAX < <(stats "${T_SUM_ALL[@]}")
read -r T_SSL T_SSL_MIN T_SSL_MAX < <(stats "${T_SSL_ALL[@]}")

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
fs=$(df -PT "$TMP" | awk 'NR==2 { print $2 }')
cat <<EOF

Machine: $(nproc) CPUs, $cpu; target fs $fs; $(uname -sr)
File: $SIZE_MIB MiB of random data; $RUNS runs each, median (range). Page cache not dropped.

| measurement | seconds or value | ratio | target |
|---|---|---|---|
| isolib upload, multipart streamed into the storage, request → \`TASK OK\` | ${T_UP} s (${T_UP_MIN}–${T_UP_MAX}) | PVE's path / isolib = $(calc "$T_PVE / $T_UP") | > 1 |
| PVE's path: spool with MD5, \`cp\`, Perl SHA-256 pass (anchor) | ${T_PVE} s (${T_PVE_MIN}–${T_PVE_MAX}) | 1.00 | — |
| isolib peak RSS during the upload | ${RSS_MIB} MiB | | bounded (< 64 MiB) |
| adoption: daemon start → record of a copied-in file | ${T_AD} s (${T_AD_MIN}–${T_AD_MAX}) | $(calc "$T_AD / $T_SUM")x \`sha256sum\` | ≤ 1.2x |
| \`sha256sum\` of the same file (anchor) | ${T_SUM} s (${T_SUM_MIN}–${T_SUM_MAX}) | 1.00 | — |
| isolib serving the volume (\`GET /files/...\`, plain HTTP, read by curl) | ${T_SRV} s (${T_SRV_MIN}–${T_SRV_MAX}) | $(calc "$T_NGX / $T_SRV")x nginx's speed | ≥ 0.9x |
| nginx (sendfile) serving the same file (anchor) | ${T_NGX} s (${T_NGX_MIN}–${T_NGX_MAX}) | 1.00 | — |
| \`openssl dgst -sha256\` of the same file (the fastest hash at hand) | ${T_SSL} s (${T_SSL_MIN}–${T_SSL_MAX}) | adoption at $(calc "$T_AD / $T_SSL")x | (reported) |
EOF
