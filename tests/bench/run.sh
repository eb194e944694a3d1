#!/usr/bin/env bash
# On-demand benchmark of isolib against PVE's download path and the tools around it.
# Never run in CI. Everything listens on 127.0.0.1 only and lives in one temp dir.
#
#   bash tests/bench/run.sh [--size-mib N] [--max-transfers N] [--runs N]
#
# Defaults: 2048 MiB, the daemon's max-transfers of 4, and 3 runs of the timings the main ratios
# rest on (isolib, PVE's path, and the limit's network, hash and direct write, alternating),
# reported as median and range.
# Prints the machine and a Markdown table of the measurements with their targets.
set -euo pipefail

SIZE_MIB=2048
MAX_TRANSFERS=4
RUNS=3
while [ $# -gt 0 ]; do
    case $1 in
        --max-transfers) MAX_TRANSFERS=${2:?--max-transfers needs a number}; shift 2 ;;
        --size-mib) SIZE_MIB=${2:?--size-mib needs a number}; shift 2 ;;
        --size-mib=*) SIZE_MIB=${1#*=}; shift ;;
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || { echo "--size-mib must be a positive integer" >&2; exit 2; }
[[ $MAX_TRANSFERS =~ ^[1-9][0-9]*$ ]] || { echo "--max-transfers must be a positive integer" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PVE_METHOD=${PVE_METHOD:-/work/shared/bench/pve-method.sh}
PY=python3
[ -x "$ROOT/tests/.venv/bin/python" ] && PY=$ROOT/tests/.venv/bin/python

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- 1. tools ------------------------------------------------------------------------------------
declare -A PKG=([nginx]=nginx-light [aria2c]=aria2 [curl]=curl [wget]=wget [zstd]=zstd)
missing=()
for cmd in nginx aria2c curl wget zstd; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${PKG[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]} (run as root, or: apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
fi
for cmd in openssl perl dd sha256sum "$PY"; do
    command -v "$cmd" >/dev/null 2>&1 || { echo "missing command: $cmd" >&2; exit 1; }
done
[ -x "$PVE_METHOD" ] || [ -f "$PVE_METHOD" ] || { echo "missing $PVE_METHOD" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

log "cargo build --release"
(cd "$ROOT" && cargo build --release >&2)
BIN=$ROOT/target/release/isolib
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }

# --- temp dir and cleanup ------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/isolib-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/bench/common.sh
. "$HERE/common.sh"
settle() { rm -rf "$OUT"/* "$STORE"/template/iso/* "$STORE"/.isolib-partial/* 2>/dev/null || true; sync; }

# --- the file ------------------------------------------------------------------------------------
SRC=$TMP/src
OUT=$TMP/out
STORE=$TMP/store
mkdir -p "$SRC" "$OUT" "$STORE/template/iso" "$TMP/state" "$TMP/nginx"
FILE=$SRC/image.iso
SIZE=$((SIZE_MIB * 1024 * 1024))

# 8 concurrent copies (isolib, then curl) must fit next to the source file
avail_mib=$(df -Pm "$TMP" | awk 'NR==2 { print $4 }')
PER_MIB=$SIZE_MIB
if [ $((SIZE_MIB * 11)) -gt $((avail_mib * 9 / 10)) ]; then
    PER_MIB=$(( (SIZE_MIB + 3) / 4 ))
fi
if [ $((SIZE_MIB + PER_MIB * 9)) -gt $((avail_mib * 9 / 10)) ]; then
    echo "not enough space in $TMP: ${avail_mib} MiB free, need about $((SIZE_MIB + PER_MIB * 9)) MiB" >&2
    exit 1
fi

log "generating $SIZE_MIB MiB of random data in $TMP"
head -c "$SIZE" /dev/urandom > "$FILE"
SHA=$(sha256sum "$FILE" | cut -c1-64)
# Segmented downloads: a file small enough for one rate-limited connection to fetch in ~16 s.
SEG_MIB=$(( SIZE_MIB < 512 ? SIZE_MIB : 512 ))
SEG_RATE_MIB=$(( SEG_MIB / 16 > 0 ? SEG_MIB / 16 : 1 ))
SEG_FILE=$SRC/seg.iso
head -c $((SEG_MIB * 1024 * 1024)) "$FILE" > "$SEG_FILE"
SEG_SHA=$(sha256sum "$SEG_FILE" | cut -c1-64)
if [ "$PER_MIB" -ne "$SIZE_MIB" ]; then
    PER_FILE=$SRC/per.iso
    head -c $((PER_MIB * 1024 * 1024)) "$FILE" > "$PER_FILE"
    PER_SHA=$(sha256sum "$PER_FILE" | cut -c1-64)
else
    PER_FILE=$FILE
    PER_SHA=$SHA
fi
sync

# --- nginx origin --------------------------------------------------------------------------------
NGINX_PORT=$(free_port)
user_line=""
if [ "$(id -u)" -eq 0 ]; then
    user_line="user root $(id -gn root);"
fi
cat > "$TMP/nginx/nginx.conf" <<EOF
$user_line
worker_processes auto;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 256; }
http {
    access_log $TMP/nginx/access.log;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 10;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        server_name localhost;
        location = /image.iso.zst { alias $SRC/image.iso.zst; }
        # A mirror that limits each connection's rate, for segmented downloads.
        location ~ ^/limited/[a-z0-9-]+\.iso\$ { alias $SEG_FILE; limit_rate ${SEG_RATE_MIB}m; }
        location ~ ^/p[0-9]+\.iso\$ { alias $PER_FILE; }
        location ~ ^/[a-z0-9-]+\.iso\$ { alias $FILE; }
        location / { return 404; }
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx/stderr.log" 2>&1 </dev/null &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$NGINX_PORT" "$NGINX_PID" nginx || { cat "$TMP/nginx/stderr.log" "$TMP/nginx/error.log" >&2 || true; exit 1; }
BASE=http://127.0.0.1:$NGINX_PORT
code=$(curl -s -o /dev/null -w '%{http_code}' -I "$BASE/image.iso")
[ "$code" = 200 ] || { echo "nginx answers $code for /image.iso" >&2; cat "$TMP/nginx/error.log" >&2; exit 1; }

# --- isolib daemon -------------------------------------------------------------------------------
export BENCH_NODE=bench BENCH_TOKEN='root@pam!bench'
BENCH_SECRET=$("$PY" -c 'import uuid; print(uuid.uuid4())')
export BENCH_SECRET
printf 'dir: local\n\tpath %s\n\tcontent iso,vztmpl,import\n' "$STORE" > "$TMP/storage.cfg"
printf 'user:root@pam:1:0:::root@localhost:::\ntoken:root@pam!bench:0:0::\n' > "$TMP/user.cfg"
printf '%s %s\n' "$BENCH_TOKEN" "$BENCH_SECRET" > "$TMP/token.cfg"
chmod 600 "$TMP/token.cfg"
D_PORT=$(free_port)
"$BIN" serve --node "$BENCH_NODE" --listen "127.0.0.1:$D_PORT" --tls false \
    --state-dir "$TMP/state" --storage-cfg "$TMP/storage.cfg" --user-cfg "$TMP/user.cfg" \
    --token-cfg "$TMP/token.cfg" --auth-fail-delay 0 --pve-dir none \
    --max-transfers "$MAX_TRANSFERS" >"$TMP/daemon.log" 2>&1 </dev/null &
D_PID=$!
PIDS+=("$D_PID")
wait_port "$D_PORT" "$D_PID" isolib || { cat "$TMP/daemon.log" >&2; exit 1; }
helper() { "$PY" "$HERE/helper.py" "$@"; }
origin_gets() { grep -c "\"GET $1 " "$TMP/nginx/access.log" || true; }

# --- 3. measurements -----------------------------------------------------------------------------
T_ISOLIB_ALL=()
T_PVE_ALL=()
T_NET_ALL=()
T_HASH_ALL=()
T_DIRECT_ALL=()
RSS_POLL_MIB=0
RSS_HWM_MIB=0
DIRTY_MIB=0
CACHED_PCT=0
PVE_DIRTY_MIB=0
PVE_CACHED_PCT=0
for run in $(seq 1 "$RUNS"); do
    settle
    log "run $run/$RUNS: isolib, one download with checksum-algorithm=sha256"
    r=$(helper one "$D_PORT" "$BASE/isolib.iso" isolib.iso "$SHA" "$D_PID")
    [ "$(json "$r" status)" = OK ] || { echo "isolib download failed: $r" >&2; exit 1; }
    # What the finished download leaves in the page cache, of its own file (fincore), before
    # the check below reads it.
    res=$(fincore --bytes --noheadings --output RES "$STORE/template/iso/isolib.iso" | tr -d ' ')
    CACHED_PCT=$(max "$CACHED_PCT" "$(awk -v r="$res" -v s="$((SIZE_MIB * 1048576))" 'BEGIN { printf "%.1f", 100 * r / s }')")
    [ "$(sha256sum "$STORE/template/iso/isolib.iso" | cut -c1-64)" = "$SHA" ] || { echo "isolib output differs" >&2; exit 1; }
    T_ISOLIB_ALL+=("$(json "$r" "'%.3f' % seconds")")
    RSS_POLL_MIB=$(max "$RSS_POLL_MIB" "$(json "$r" "'%.1f' % (rss_peak_kib / 1024)")")
    RSS_HWM_MIB=$(max "$RSS_HWM_MIB" "$(json "$r" "'%.1f' % (hwm_kib / 1024)")")
    DIRTY_MIB=$(max "$DIRTY_MIB" "$(json "$r" "'%.1f' % (dirty_peak_kib / 1024)")")

    settle
    log "run $run/$RUNS: PVE's path, pve-method.sh"
    r=$("$PY" "$HERE/helper.py" dirty-during bash "$PVE_METHOD" "$BASE/pve.iso" "$OUT/pve.iso" sha256 "$SHA")
    T_PVE_ALL+=("$(json "$r" "'%.3f' % seconds")")
    PVE_DIRTY_MIB=$(max "$PVE_DIRTY_MIB" "$(json "$r" "'%.1f' % (dirty_peak_kib / 1024)")")
    res=$(fincore --bytes --noheadings --output RES "$OUT/pve.iso" | tr -d ' ')
    PVE_CACHED_PCT=$(max "$PVE_CACHED_PCT" "$(awk -v r="$res" -v s="$((SIZE_MIB * 1048576))" 'BEGIN { printf "%.1f", 100 * r / s }')")

    # The limit's parts in the same alternation, so that a busy minute weighs on both sides.
    settle
    log "run $run/$RUNS: the limit's parts: network, hash, direct write"
    s=$EPOCHREALTIME
    curl -s -o /dev/null "$BASE/null.iso"
    T_NET_ALL+=("$(since "$s")")
    s=$EPOCHREALTIME
    openssl dgst -sha256 "$FILE" >/dev/null
    T_HASH_ALL+=("$(since "$s")")
    s=$EPOCHREALTIME
    dd if=/dev/zero of="$OUT/direct.img" bs=4M count=$(( (SIZE_MIB + 3) / 4 )) oflag=direct status=none
    T_DIRECT_ALL+=("$(since "$s")")
    rm -f "$OUT/direct.img"
done
read -r T_ISOLIB T_ISOLIB_MIN T_ISOLIB_MAX < <(stats "${T_ISOLIB_ALL[@]}")
read -r T_PVE T_PVE_MIN T_PVE_MAX < <(stats "${T_PVE_ALL[@]}")
read -r T_NET T_NET_MIN T_NET_MAX < <(stats "${T_NET_ALL[@]}")
read -r T_HASH T_HASH_MIN T_HASH_MAX < <(stats "${T_HASH_ALL[@]}")
read -r T_DIRECT T_DIRECT_MIN T_DIRECT_MAX < <(stats "${T_DIRECT_ALL[@]}")
T_PHYS=$(printf '%s\n' "$T_NET" "$T_HASH" "$T_DIRECT" | sort -g | tail -1)
RSS_MIB=$(max "$RSS_POLL_MIB" "$RSS_HWM_MIB")

settle
log "PVE's path in parts: wget alone, then the Perl hashing pass alone"
s=$EPOCHREALTIME
wget -q -O "$OUT/pve.iso" "$BASE/pve.iso"
T_PVE_WGET=$(since "$s")
s=$EPOCHREALTIME
perl -MDigest::SHA -e 'my $d = Digest::SHA->new(256); open(my $fh, "<", $ARGV[0]) or die;
    binmode $fh; $d->addfile($fh); print $d->hexdigest' "$OUT/pve.iso" >/dev/null
T_PVE_HASH=$(since "$s")

settle
log "aria2c --checksum"
s=$EPOCHREALTIME
aria2c -q --checksum="sha-256=$SHA" -x1 --file-allocation=none --allow-overwrite=true \
    --auto-file-renaming=false -d "$OUT" -o aria.iso "$BASE/aria.iso"
T_ARIA=$(since "$s")

settle
log "one-pass pipeline: curl | tee | openssl dgst; sync"
s=$EPOCHREALTIME
got=$(curl -s "$BASE/pipe.iso" | tee "$OUT/pipe.iso" | openssl dgst -sha256)
sync
T_PIPE=$(since "$s")
[ "${got##* }" = "$SHA" ] || { echo "pipeline hash differs: $got" >&2; exit 1; }

settle
log "references: network and hash at once, a buffered write"
# Both at once on the same cores, as a download must: no disk at all.
s=$EPOCHREALTIME
curl -s "$BASE/both.iso" | openssl dgst -sha256 >/dev/null
T_BOTH=$(since "$s")
s=$EPOCHREALTIME
dd if=/dev/zero of="$OUT/dd.img" bs=4M count=$(( (SIZE_MIB + 3) / 4 )) conv=fsync status=none
T_DISK=$(since "$s")

settle
# A decompressing download: text-like data (base64 of random bytes, about 4:3 for zstd), so the
# decoder has work to do; against the slowest of fetching the compressed file, hashing it, and
# the decompressor writing its output to a file on the same disk, then sync.
log "a decompressing download (zstd): preparing $SIZE_MIB MiB of text"
head -c $((SIZE * 3 / 4)) /dev/urandom | base64 -w 0 | head -c "$SIZE" | zstd -q -3 -T0 > "$SRC/image.iso.zst"
ZSHA=$(sha256sum "$SRC/image.iso.zst" | cut -c1-64)
settle
log "a decompressing download (zstd): isolib"
r=$(helper one "$D_PORT" "$BASE/image.iso.zst" zst.iso "$ZSHA" "$D_PID" compression=zst)
[ "$(json "$r" status)" = OK ] || { echo "isolib zst download failed: $r" >&2; exit 1; }
T_ZST=$(json "$r" "'%.3f' % seconds")
rm -f "$STORE/template/iso/zst.iso"
s=$EPOCHREALTIME
curl -s -o /dev/null "$BASE/image.iso.zst"
T_ZNET=$(since "$s")
s=$EPOCHREALTIME
openssl dgst -sha256 "$SRC/image.iso.zst" >/dev/null
T_ZHASH=$(since "$s")
s=$EPOCHREALTIME
zstd -q -d -c "$SRC/image.iso.zst" > "$OUT/unz.iso"
sync
T_UNZ=$(since "$s")
rm -f "$OUT/unz.iso"
T_ZLIM=$(printf '%s\n' "$T_ZNET" "$T_ZHASH" "$T_UNZ" | sort -g | tail -1)
R_ZST=$(calc "$T_ZST / $T_ZLIM")
rm -f "$SRC/image.iso.zst"

settle
log "8 concurrent different downloads, $PER_MIB MiB each: isolib"
pairs=()
for i in 1 2 3 4 5 6 7 8; do pairs+=("$BASE/p$i.iso=c$i.iso"); done
r=$(helper many "$D_PORT" "$PER_SHA" "${pairs[@]}")
for st in $(json "$r" "' '.join(statuses)"); do
    [ "$st" = OK ] || { echo "concurrent isolib download failed: $r" >&2; exit 1; }
done
T_ISO8=$(json "$r" "'%.3f' % seconds")
AGG_ISO=$(calc "8 * $PER_MIB / $T_ISO8" 1)
POLLS=$(json "$r" polls)
P50=$(json "$r" "'%.1f' % p50_ms")
P99=$(json "$r" "'%.1f' % p99_ms")
PMAX=$(json "$r" "'%.1f' % max_ms")

settle
log "8 concurrent different downloads, $PER_MIB MiB each: curl -o (then sync)"
s=$EPOCHREALTIME
cpids=()
for i in 1 2 3 4 5 6 7 8; do
    curl -s -o "$OUT/q$i.iso" "$BASE/p$((i)).iso" & cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p"; done
T_CURL8_NOSYNC=$(since "$s")
sync
T_CURL8=$(since "$s")
AGG_CURL=$(calc "8 * $PER_MIB / $T_CURL8" 1)
AGG_CURL_NOSYNC=$(calc "8 * $PER_MIB / $T_CURL8_NOSYNC" 1)

settle
log "segmented: $SEG_MIB MiB from a mirror limited to $SEG_RATE_MIB MiB/s per connection"
r=$(helper one "$D_PORT" "$BASE/limited/seg1.iso" seg1.iso "$SEG_SHA" "$D_PID" connections=1)
[ "$(json "$r" status)" = OK ] || { echo "isolib download with one connection failed: $r" >&2; exit 1; }
T_SEG1=$(json "$r" "'%.3f' % seconds")
settle
r=$(helper one "$D_PORT" "$BASE/limited/seg4.iso" seg4.iso "$SEG_SHA" "$D_PID" connections=4)
[ "$(json "$r" status)" = OK ] || { echo "isolib download with 4 connections failed: $r" >&2; exit 1; }
T_SEG4=$(json "$r" "'%.3f' % seconds")
SEG4_RSS=$(json "$r" "'%.1f' % (rss_peak_kib / 1024)")
SEG4_DIRTY=$(json "$r" "'%.1f' % (dirty_peak_kib / 1024)")
[ "$(sha256sum "$STORE/template/iso/seg4.iso" | cut -c1-64)" = "$SEG_SHA" ] || { echo "segmented output differs" >&2; exit 1; }
settle
s=$EPOCHREALTIME
aria2c -q --checksum="sha-256=$SEG_SHA" -x4 -s4 --file-allocation=none --allow-overwrite=true \
    --auto-file-renaming=false -d "$OUT" -o aria4.iso "$BASE/limited/aria4.iso"
sync
T_ARIA4=$(since "$s")
R_SEG=$(calc "$T_SEG4 / $T_ARIA4")
SP_SEG=$(calc "$T_SEG1 / $T_SEG4")

settle
log "10 identical concurrent requests"
before=$(origin_gets /same.iso)
r=$(helper same "$D_PORT" "$BASE/same.iso" same.iso "$SHA" 10)
for st in $(json "$r" "' '.join(statuses)"); do
    [ "$st" = OK ] || { echo "identical request failed: $r" >&2; exit 1; }
done
sleep 0.5  # nginx writes the access log line when the response is done
GETS=$(( $(origin_gets /same.iso) - before ))

settle
log "transfer cut at 50%, then resumed"
r=$(helper cut "$D_PORT" "$FILE" cut.iso "$SHA")
CUT_STATUS=$(json "$r" status)
CUT_RATIO=$(json "$r" "'%.3f' % (bytes_sent / size)")
CUT_GETS=$(json "$r" gets)
CUT_RANGES=$(json "$r" "' '.join(ranges)")
settle

# --- 4. report -----------------------------------------------------------------------------------
# Targets are judged on the unrounded ratios.
yn() { if awk "BEGIN { exit !($1) }"; then echo yes; else echo no; fi; }
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
fs=$(df -PT "$TMP" | awk 'NR==2 { print $2 }')

SP_PVE=$(calc "$T_PVE / $T_ISOLIB")
T_PVE_THIRD=$(calc "$T_PVE / 3" 3)
SP_ARIA=$(calc "$T_ARIA / $T_ISOLIB")
SP_PIPE=$(calc "$T_PIPE / $T_ISOLIB")
R_PHYS=$(calc "$T_ISOLIB / $T_PHYS" 3)
R_BOTH=$(calc "$T_ISOLIB / $T_BOTH")
R_CONC=$(calc "$AGG_ISO / $AGG_CURL")

cat <<EOF

Machine: $(nproc) CPUs, $cpu; $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2/1048576 }' /proc/meminfo); target fs $fs; $(uname -sr)
File: $SIZE_MIB MiB of random data (sha256 $SHA); 8-concurrent runs use $PER_MIB MiB per file.
Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Outputs deleted and \`sync\` run between measurements; page cache not dropped.

| measurement | seconds or value | ratio against the anchor | target | met |
|---|---|---|---|---|
| isolib download-url, sha256, request → \`TASK OK\` (anchor; median of $RUNS, range ${T_ISOLIB_MIN}–${T_ISOLIB_MAX}) | ${T_ISOLIB} s | 1.00 | — | — |
| PVE's path (wget, second hashing pass, rename; median of $RUNS, range ${T_PVE_MIN}–${T_PVE_MAX}) | ${T_PVE} s | isolib ${SP_PVE}x faster | ≥ 3x faster | $(yn "$T_PVE / $T_ISOLIB >= 3") |
| · its parts, once each: \`wget -O FILE\` (no fsync) | ${T_PVE_WGET} s | | | |
| · its parts, once each: Perl \`Digest::SHA\` pass over FILE | ${T_PVE_HASH} s | | | |
| aria2c --checksum=sha-256 -x1 | ${T_ARIA} s | isolib ${SP_ARIA}x faster | (reported) | — |
| one pass: \`curl \| tee \| openssl dgst -sha256\`; sync | ${T_PIPE} s | isolib ${SP_PIPE}x faster | faster (> 1x) | $(yn "$T_PIPE / $T_ISOLIB > 1") |
| physical limit = slowest of network, hash and a direct write (below) | ${T_PHYS} s | isolib at ${R_PHYS}x the limit | ≤ 1.15x | $(yn "$T_ISOLIB / $T_PHYS <= 1.15") |
| isolib download-url with \`compression=zst\` (text-like data, sha256 of the .zst) | ${T_ZST} s | ${R_ZST}x the slowest below | ≤ 1.15x | $(yn "$T_ZST / $T_ZLIM <= 1.15") |
| · its limits: fetch the .zst ${T_ZNET} s, hash it ${T_ZHASH} s, \`zstd -d\` to a file then sync ${T_UNZ} s | ${T_ZLIM} s | | | |
| · network: \`curl -s -o /dev/null\` (median of $RUNS, range ${T_NET_MIN}–${T_NET_MAX}) | ${T_NET} s | | | |
| · hash: \`openssl dgst -sha256 FILE\` (median of $RUNS, range ${T_HASH_MIN}–${T_HASH_MAX}) | ${T_HASH} s | | | |
| · disk: \`dd bs=4M oflag=direct\` (median of $RUNS, range ${T_DIRECT_MIN}–${T_DIRECT_MAX}) | ${T_DIRECT} s | | | |
| (reference, not in the limit: \`dd bs=4M conv=fsync\`, buffered then one fsync) | ${T_DISK} s | | | |
| (reference: network and hash at once, \`curl -s URL \| openssl dgst -sha256\`, nothing written) | ${T_BOTH} s | isolib at ${R_BOTH}x | (reported) | — |
| isolib peak RSS during its transfer (max of VmRSS every 0.1 s = ${RSS_POLL_MIB}, VmHWM = ${RSS_HWM_MIB}) | ${RSS_MIB} MiB | | < 64 MiB | $(yn "$RSS_MIB < 64") |
| page cache the finished download leaves of its file (fincore RES / size, max of the runs) | ${CACHED_PCT} % | | ≤ 5 % | $(yn "$CACHED_PCT <= 5") |
| peak \`Dirty\` in /proc/meminfo during the download (every 0.05 s, whole machine) | ${DIRTY_MIB} MiB | | ≤ 64 MiB | $(yn "$DIRTY_MIB <= 64") |
| · the same for PVE's path: page cache it leaves of its file / peak \`Dirty\` | ${PVE_CACHED_PCT} % / ${PVE_DIRTY_MIB} MiB | | (reported) | — |
| 8 concurrent different downloads, ${PER_MIB} MiB each: isolib with sha256 (\`max-transfers\` $MAX_TRANSFERS) | ${AGG_ISO} MiB/s (${T_ISO8} s) | ${R_CONC}x the 8 curls | (reported) | — |
| 8 concurrent \`curl -s -o FILE\`, then sync (anchor; without sync: ${AGG_CURL_NOSYNC} MiB/s) | ${AGG_CURL} MiB/s (${T_CURL8} s) | 1.00 | — | — |
| task status and log requests at 100/s during the 8 isolib downloads (${POLLS} requests) | p99 ${P99} ms (p50 ${P50}, max ${PMAX}) | | (reported) | — |
| segmented, ${SEG_MIB} MiB from nginx with \`limit_rate ${SEG_RATE_MIB}m\` per connection: isolib \`connections=4\`, sha256 (peak VmRSS ${SEG4_RSS} MiB, peak Dirty ${SEG4_DIRTY} MiB) | ${T_SEG4} s | ${R_SEG}x aria2c -x4 | ≤ 1.0x | $(yn "$T_SEG4 / $T_ARIA4 <= 1.0") |
| · aria2c -x4 -s4 --checksum=sha-256, then sync (anchor) | ${T_ARIA4} s | 1.00 | — | — |
| · isolib with one connection | ${T_SEG1} s | 4 connections ${SP_SEG}x faster | (reported) | — |
| 10 identical concurrent requests: origin GETs | ${GETS} | | 1 | $(yn "$GETS == 1") |
| transfer cut at 50%: bytes the origin sent / file size (task ${CUT_STATUS}, ${CUT_GETS} GETs, Range: ${CUT_RANGES}) | ${CUT_RATIO} | | ≤ 1.05 | $(yn "$CUT_RATIO <= 1.05 && \"$CUT_STATUS\" == \"OK\"") |

Timing needed for the 3x target: isolib at most ${T_PVE_THIRD} s (PVE's median / 3). isolib's file
is on disk (fsync of file and directory) at \`TASK OK\`; \`dd conv=fsync\` of the same size took ${T_DISK} s.
EOF
