#!/usr/bin/env bash
# Debian packaging: builds isolib and libpve-storage-isolib-perl from packaging/debian, checks
# what each package ships and, as root on a machine where isolib is not installed, installs the
# daemon package, runs the daemon with the packaged config, then upgrades, removes and purges
# it. The .deb files (and the build log) are left in target/debian/.
#
# The release build goes to the source tree's target/ (as debian/rules does for every build),
# so only the first run compiles everything.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEB_OUT=$ROOT/target/debian
WORK=$(mktemp -d /tmp/isolib-packaging.XXXXXX)
SOCKET=/run/isolib/isolib.sock
CONFIG=/etc/isolib/isolib.toml
CERT=/etc/isolib/isolib.pem
KEY=/etc/isolib/isolib.key
STATE=/var/lib/isolib
PASS=0
FAIL=0
SKIP=0
DAEMON_PID=
INSTALLED=0

summary() { echo "packaging: $PASS passed, $FAIL failed, $SKIP skipped"; }
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
skip() { SKIP=$((SKIP + 1)); echo "skip - $*"; }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
die() {
    not_ok "$*"
    summary
    exit 1
}

stop_daemon() {
    local rc=0
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" || rc=$?
        DAEMON_PID=
    fi
    return "$rc"
}

cleanup() {
    stop_daemon || true
    if [ "$INSTALLED" = 1 ]; then
        dpkg --purge isolib >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools ---------------------------------------------------------------------------------

missing=()
for p in debhelper dpkg-dev help2man libssl-dev pkg-config curl openssl; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root to install them)"
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log"; die "apt-get install ${missing[*]}"; }
fi

# --- build ---------------------------------------------------------------------------------

# dpkg-buildpackage wants debian/ at the top of a source tree: a temporary tree holds a copy of
# packaging/debian and nothing else, and debian/rules builds the sources of ISOLIB_SRC. So the
# repository gets no debian/ and the build leaves nothing in it but target/.
mkdir -p "$WORK/isolib" "$DEB_OUT"
cp -r "$ROOT/packaging/debian" "$WORK/isolib/debian"
echo "building the packages (release build in $ROOT/target, log in $DEB_OUT/build.log)"
if ! (cd "$WORK/isolib" && ISOLIB_SRC=$ROOT dpkg-buildpackage -us -uc -b) >"$DEB_OUT/build.log" 2>&1; then
    tail -n 60 "$DEB_OUT/build.log"
    die "dpkg-buildpackage -us -uc -b"
fi
ok "dpkg-buildpackage -us -uc -b"

VERSION=$(cd "$WORK/isolib" && dpkg-parsechangelog -SVersion)
ARCH=$(dpkg --print-architecture)
rm -f "$DEB_OUT"/*.deb
for deb in "isolib_${VERSION}_$ARCH.deb" "libpve-storage-isolib-perl_${VERSION}_all.deb"; do
    [ -f "$WORK/$deb" ] || die "the build made no $deb (made: $(cd "$WORK" && echo *.deb))"
    mv "$WORK/$deb" "$DEB_OUT/"
done
ISOLIB_DEB=$DEB_OUT/isolib_${VERSION}_$ARCH.deb
PERL_DEB=$DEB_OUT/libpve-storage-isolib-perl_${VERSION}_all.deb
others=$(cd "$WORK" && find . -maxdepth 1 \( -name '*.deb' -o -name '*.ddeb' \))
check "exactly two binary packages (no others: '${others}')" test -z "$others"

# --- package contents ----------------------------------------------------------------------

# "MODE PATH" per entry, paths without the leading "."
contents() { dpkg-deb -c "$1" | awk '{ p = $6; sub(/^\./, "", p); print $1, p }'; }
contents "$ISOLIB_DEB" >"$WORK/isolib.list"
contents "$PERL_DEB" >"$WORK/perl.list"
has() { grep -qE "^$2 $3\$" "$1"; }

check "isolib ships /usr/bin/isolib, executable" has "$WORK/isolib.list" '-rwxr-xr-x' /usr/bin/isolib
check "isolib ships the systemd unit" has "$WORK/isolib.list" '-rw-r--r--' '(/usr)?/lib/systemd/system/isolib\.service'
check "isolib ships $CONFIG" has "$WORK/isolib.list" '-rw-r--r--' "$CONFIG"
check "isolib ships its copyright file" has "$WORK/isolib.list" '-rw-r--r--' /usr/share/doc/isolib/copyright
unexpected() {
    # every file of $1 must match one of the patterns that follow
    local list=$1
    shift
    local pattern
    pattern=$(printf '|%s' "$@")
    ! grep -v '^d' "$list" | awk '{ print $2 }' | grep -vxE "${pattern:1}"
}
check "isolib ships nothing else (no TLS pair, no state)" unexpected "$WORK/isolib.list" \
    /usr/bin/isolib '(/usr)?/lib/systemd/system/isolib\.service' "$CONFIG" \
    '/usr/share/man/man8/isolib(-[a-z-]+)?\.8\.gz' '/usr/share/doc/isolib/.*'
check "$CONFIG is a conffile" \
    bash -c "dpkg-deb -I '$ISOLIB_DEB' conffiles | grep -qx '$CONFIG'"
field() { dpkg-deb -f "$1" "$2"; }
isolib_depends=$(field "$ISOLIB_DEB" Depends)
check "isolib depends on openssl ($isolib_depends)" grep -qE '(^|, )openssl(,|$)' <<<"$isolib_depends"
check "isolib depends on the libssl it links" grep -q 'libssl3' <<<"$isolib_depends"
no_debian_rust() { ! grep -qE 'cargo|rustc|libstd-rust' <<<"$isolib_depends"; }
check "isolib needs no Debian Rust" no_debian_rust

# The Perl plugin: every file of perl-shim/lib below /usr/share/perl5, and nothing else.
check "the plugin package is Architecture: all" test "$(field "$PERL_DEB" Architecture)" = all
perl_depends=$(field "$PERL_DEB" Depends)
check "the plugin depends on libpve-storage-perl" grep -q 'libpve-storage-perl' <<<"$perl_depends"
check "the plugin depends on isolib (= $VERSION)" grep -qF "isolib (= $VERSION)" <<<"$perl_depends"
check "the plugin ships PVE/Storage/Custom/IsolibPlugin.pm" \
    has "$WORK/perl.list" '-rw-r--r--' /usr/share/perl5/PVE/Storage/Custom/IsolibPlugin\\.pm
shim_missing=
while IFS= read -r f; do
    has "$WORK/perl.list" '-rw-r--r--' "/usr/share/perl5/${f#./}" || shim_missing+=" ${f#./}"
done < <(cd "$ROOT/perl-shim/lib" && find . -type f ! -name '.*' ! -name '*~' ! -name '*.orig' ! -name '*.rej')
check "the plugin ships every file of perl-shim/lib (missing:${shim_missing:- none})" test -z "$shim_missing"
check "the plugin ships nothing outside /usr/share/perl5 and its doc dir" unexpected "$WORK/perl.list" \
    '/usr/share/perl5/.+\.(pm|pl|pod)' '/usr/share/doc/libpve-storage-isolib-perl/.*'

# Maintainer scripts: present, valid sh, doing what they are for.
for pkg in isolib libpve-storage-isolib-perl; do
    deb=$ISOLIB_DEB
    [ "$pkg" = isolib ] || deb=$PERL_DEB
    dpkg-deb -e "$deb" "$WORK/control-$pkg"
    for script in postinst postrm; do
        check "$pkg $script is valid sh" sh -n "$WORK/control-$pkg/$script"
    done
done
check "isolib postinst makes the TLS pair and enables the unit" bash -c \
    "grep -q 'openssl req' '$WORK/control-isolib/postinst' && grep -q 'deb-systemd-helper' '$WORK/control-isolib/postinst'"
check "the plugin's postinst reloads the PVE services that load PVE::Storage" bash -c \
    "grep -q 'pvedaemon pveproxy pvestatd pvescheduler' '$WORK/control-libpve-storage-isolib-perl/postinst'"

# What the binary, its man pages, its unit and its config say about each other.
dpkg-deb -x "$ISOLIB_DEB" "$WORK/root"
BIN=$WORK/root/usr/bin/isolib
check "isolib --version is the package's version" test "$("$BIN" --version)" = "isolib ${VERSION%-*}"
# One man page per command (and per subcommand), each documenting every option --help lists.
commands() {
    "$BIN" "$@" --help | awk '/^Commands:/ { on = 1; next } !/^  / { on = 0 } on && $1 != "help" { print $1 }'
}
cmdlines=("")
for cmd in $(commands); do
    subs=$(commands "$cmd")
    if [ -z "$subs" ]; then cmdlines+=("$cmd"); else for sub in $subs; do cmdlines+=("$cmd $sub"); done; fi
done
for words in "${cmdlines[@]}"; do
    page=isolib${words:+-${words// /-}}
    man_page=$WORK/root/usr/share/man/man8/$page.8.gz
    if ! has "$WORK/isolib.list" '-rw-r--r--' "/usr/share/man/man8/$page\\.8\\.gz"; then
        not_ok "isolib ships the man page $page(8) for 'isolib $words'"
        continue
    fi
    man_text=$(zcat "$man_page")
    missing_opts=
    # shellcheck disable=SC2086 # $words: the command and its subcommand, as separate words
    for opt in $("$BIN" $words --help | grep -oE '^ +(-[a-zA-Z], )?--[a-z][a-z-]*' | grep -oE -- '--[a-z-]+$'); do
        # roff writes every - of an option as \-
        grep -qF -- "${opt//-/\\-}" <<<"$man_text" || missing_opts+=" $opt"
    done
    check "isolib ships $page(8), documenting every option of 'isolib $words' (missing:${missing_opts:- none})" \
        test -z "$missing_opts"
done
serve_opts=$($BIN serve --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
unknown_keys=
while IFS= read -r k; do
    grep -qx -- "--$k" <<<"$serve_opts" || unknown_keys+=" $k"
done < <(sed -nE 's/^(# )?([a-z][a-z-]*) = .*/\2/p' "$WORK/root$CONFIG")
check "every key of the packaged config, set or commented, is a serve option (unknown:${unknown_keys:- none})" \
    test -z "$unknown_keys"
set_keys=$(sed -nE 's/^([a-z][a-z-]*) = .*/\1/p' "$WORK/root$CONFIG" | LC_ALL=C sort | tr '\n' ' ')
check "the packaged config sets listen, socket, state-dir, tls-cert, tls-key (sets: $set_keys)" \
    test "$set_keys" = "listen socket state-dir tls-cert tls-key "
check "the config's paths are the packaged ones" bash -c "grep -qx 'state-dir = \"$STATE\"' '$WORK/root$CONFIG' &&
    grep -qx 'socket = \"$SOCKET\"' '$WORK/root$CONFIG' && grep -qx 'listen = \"127.0.0.1:8016\"' '$WORK/root$CONFIG' &&
    grep -qx 'tls-cert = \"$CERT\"' '$WORK/root$CONFIG' && grep -qx 'tls-key = \"$KEY\"' '$WORK/root$CONFIG'"
UNIT_IN_DEB=$(find "$WORK/root" -path '*/systemd/system/isolib.service')
check "the unit starts 'isolib serve --config $CONFIG'" \
    grep -qx "ExecStart=/usr/bin/isolib serve --config $CONFIG" "$UNIT_IN_DEB"
# Storages are added at run time, anywhere: nothing may pin the writable paths to a fixed list.
storage_paths_writable() {
    ! grep -qE '^(ProtectSystem=strict|ReadWritePaths=|ReadOnlyPaths=|InaccessiblePaths=|ProtectHome=|PrivateTmp=yes|DynamicUser=yes)' "$UNIT_IN_DEB"
}
check "the unit leaves storage paths writable (no ProtectSystem=strict, ReadWritePaths, ProtectHome, PrivateTmp)" \
    storage_paths_writable
check "the unit is hardened (ProtectSystem=full, NoNewPrivileges, a capability bounding set)" bash -c \
    "grep -qx ProtectSystem=full '$UNIT_IN_DEB' && grep -qx NoNewPrivileges=yes '$UNIT_IN_DEB' && grep -q '^CapabilityBoundingSet=' '$UNIT_IN_DEB'"
check "the unit raises the descriptor limit above max-connections" \
    grep -qx "LimitNOFILE=65536" "$UNIT_IN_DEB"
check "the unit has /run/isolib and /var/lib/isolib" bash -c \
    "grep -qx RuntimeDirectory=isolib '$UNIT_IN_DEB' && grep -qx StateDirectory=isolib '$UNIT_IN_DEB'"

# --- install, run, upgrade, remove, purge (root only) --------------------------------------

install_tests() {
    INSTALLED=1
    dpkg -i "$ISOLIB_DEB" </dev/null >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; die "dpkg -i isolib"; }
    check "dpkg -i installs isolib" test "$(dpkg-query -W -f='${db:Status-Status}' isolib)" = installed
    check "postinst made $STATE, mode 0700" test "$(stat -c %a "$STATE" 2>/dev/null)" = 700
    check "postinst made the TLS key, mode 0600" test "$(stat -c %a "$KEY" 2>/dev/null)" = 600
    check "the TLS certificate belongs to the key" \
        test "$(openssl x509 -noout -pubkey -in "$CERT" 2>&1)" = "$(openssl pkey -pubout -in "$KEY" 2>&1)"
    check "the TLS certificate names 127.0.0.1" \
        bash -c "openssl x509 -noout -ext subjectAltName -in '$CERT' | grep -q 'IP Address:127.0.0.1'"

    local unit man_opt=--man=no
    unit=$(dpkg -L isolib | grep -E '/systemd/system/isolib\.service$')
    # The Documentation= man page is checked too where man is there to check it.
    if command -v man >/dev/null && [ -e /usr/share/man/man8/isolib-serve.8.gz ]; then man_opt=--man=yes; fi
    local verify_rc=0
    systemd-analyze verify "$man_opt" "$unit" >"$WORK/verify.log" 2>&1 || verify_rc=$?
    # Unknown keys are only warnings (exit 0), so the output must not mention the unit.
    if [ "$verify_rc" = 0 ] && ! grep -q isolib "$WORK/verify.log"; then
        ok "systemd-analyze verify $man_opt $unit"
    else
        cat "$WORK/verify.log"
        not_ok "systemd-analyze verify $man_opt $unit"
    fi

    # The installed binary with the packaged config, as the unit starts it, on a free port
    # instead of 8016 (something else may use it here).
    NO_COLOR=1 /usr/bin/isolib serve --config "$CONFIG" --listen 127.0.0.1:0 \
        >"$WORK/daemon.out" 2>"$WORK/daemon.err" </dev/null &
    DAEMON_PID=$!
    for _ in $(seq 600); do
        grep -q 'listening on unix:' "$WORK/daemon.err" && break
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q 'listening on unix:' "$WORK/daemon.err"; then
        cat "$WORK/daemon.err"
        die "the daemon did not start with the packaged config"
    fi
    ok "the daemon starts with the packaged config"
    local port code
    port=$(grep -oE 'listening on https://127\.0\.0\.1:[0-9]+' "$WORK/daemon.err" | head -n 1 | sed 's/.*://')
    check "it listens on its socket $SOCKET" test -S "$SOCKET"
    code=$(curl -sS -o "$WORK/version.json" -w '%{http_code}' --unix-socket "$SOCKET" \
        http://localhost/api2/json/version) || code=none
    check "the socket answers GET /version for root (HTTP $code)" \
        bash -c "[ '$code' = 200 ] && grep -q '\"version\"' '$WORK/version.json'"
    # --cacert: the listener serves the pair postinst made.
    code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CERT" \
        "https://127.0.0.1:${port:-0}/api2/json/version") || code=none
    check "the HTTPS port answers with the packaged certificate (401 without credentials: HTTP $code)" \
        test "$code" = 401
    local auth
    auth=$(grep -oE 'Authorization: PVEAPIToken=[^ ]+' "$WORK/daemon.out" | head -n 1) || true
    if [ -n "$auth" ]; then
        code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CERT" -H "$auth" \
            "https://127.0.0.1:${port:-0}/api2/json/version") || code=none
        check "the HTTPS port answers GET /version with the token the daemon printed (HTTP $code)" test "$code" = 200
    else
        skip "no API token printed on first start (node mode?)"
    fi
    local stop_rc=0
    stop_daemon || stop_rc=$?
    check "the daemon stops on SIGTERM with exit code 0 (got $stop_rc)" test "$stop_rc" = 0
    check "the daemon removed its socket" test ! -e "$SOCKET"
    check "the daemon keeps its state in $STATE" test -n "$(ls -A "$STATE")"

    # Upgrade (a reinstall runs the same maintainer script paths): config, TLS pair and state stay.
    local pair_sum
    pair_sum=$(cat "$CERT" "$KEY" | sha256sum)
    echo "# edited by tests/packaging.sh" >>"$CONFIG"
    touch "$STATE/packaging-test-marker"
    dpkg -i "$ISOLIB_DEB" </dev/null >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; die "dpkg -i isolib (upgrade)"; }
    check "upgrade keeps the TLS pair" test "$(cat "$CERT" "$KEY" | sha256sum)" = "$pair_sum"
    check "upgrade keeps the edited config" grep -qx '# edited by tests/packaging.sh' "$CONFIG"
    check "upgrade keeps the state" test -e "$STATE/packaging-test-marker"

    dpkg -r isolib </dev/null >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; die "dpkg -r isolib"; }
    check "remove takes the binary" test ! -e /usr/bin/isolib
    check "remove keeps config, TLS pair and state" \
        test -e "$CONFIG" -a -e "$CERT" -a -e "$KEY" -a -e "$STATE/packaging-test-marker"

    dpkg --purge isolib </dev/null >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; die "dpkg --purge isolib"; }
    INSTALLED=0
    check "purge removes the state $STATE" test ! -e "$STATE"
    check "purge removes /etc/isolib (config and TLS pair)" test ! -e /etc/isolib
    check "purge removes /run/isolib" test ! -e /run/isolib
    check "purge leaves no unit enabled" test ! -e /etc/systemd/system/multi-user.target.wants/isolib.service
    check "purge leaves isolib not installed" \
        bash -c "s=\$(dpkg-query -W -f='\${db:Status-Status}' isolib 2>/dev/null || true); [ -z \"\$s\" ] || [ \"\$s\" = not-installed ]"
}

status=$(dpkg-query -W -f='${db:Status-Status}' isolib 2>/dev/null || true)
if [ "$(id -u)" != 0 ]; then
    skip "install, run, upgrade and purge: needs root"
elif [ -n "$status" ] && [ "$status" != not-installed ]; then
    skip "install, run, upgrade and purge: isolib is already on this machine ($status)"
elif [ -e /etc/isolib ] || [ -e "$STATE" ] || [ -e /run/isolib ]; then
    skip "install, run, upgrade and purge: /etc/isolib, $STATE or /run/isolib exists already"
else
    install_tests
fi

summary
[ "$FAIL" = 0 ]
