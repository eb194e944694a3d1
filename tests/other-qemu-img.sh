#!/usr/bin/env bash
# Runs the untrusted-image checks again with a second qemu-img version: Debian 12's 7.2 when the
# host has a newer one, else the current one from Debian's backports. What qemu-img reports
# about an image changed in 8.0 (the `children` list), and isolib's refusals must hold with
# either. The other version is unpacked under tests/.qemu-img/ and bind-mounted over
# /usr/bin/qemu-img in a private mount namespace, so the daemon runs it from the path PVE uses.
# Needs root (unshare, mount); elsewhere it says why it skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/tests/.qemu-img"

if [ "$(id -u)" -ne 0 ]; then
  echo "other-qemu-img: SKIPPED: needs root for a mount namespace"
  exit 0
fi

major() { "$1" --version | sed -n '1s/^qemu-img version \([0-9]*\)\..*/\1/p'; }
system_major="$(major /usr/bin/qemu-img)"

# The backports suite is reached through the same archive the system's own sources name.
apt_opts=()
if [ "$system_major" -ge 8 ]; then
  want="7.2"; pkg="qemu-utils=$(apt-cache madison qemu-utils | awk '$3 ~ /^1:7\.2/ {print $3; exit}')"
else
  want="backports"; pkg="qemu-utils/bookworm-backports"
  uri="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
  [ -n "$uri" ] || uri="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  mkdir -p "$DIR/apt/lists/partial"
  echo "deb $uri bookworm-backports main" > "$DIR/apt/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$DIR/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$DIR/apt/lists")
  apt-get "${apt_opts[@]}" update -qq
fi

alt="$DIR/$want/usr/bin/qemu-img"
if [ ! -x "$alt" ]; then
  rm -rf "$DIR/$want" "$DIR/deb"
  mkdir -p "$DIR/deb"
  (cd "$DIR/deb" && apt-get "${apt_opts[@]}" download -qq "$pkg")
  deb="$(ls "$DIR"/deb/qemu-utils_*.deb)"
  # The libraries it links, from the system's own suite.
  deps="$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/[ (].*//; s/^ *//' | grep -v '^$' || true)"
  missing=()
  for d in $deps; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
  if [ "${#missing[@]}" -gt 0 ] &&
     ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "other-qemu-img: SKIPPED: cannot install what the other qemu-img links: ${missing[*]}"
    exit 0
  fi
  dpkg-deb -x "$deb" "$DIR/$want"
fi
if ldd "$alt" | grep -q 'not found'; then
  echo "other-qemu-img: SKIPPED: $alt lacks libraries: $(ldd "$alt" | grep 'not found' | tr -d '\t')"
  exit 0
fi
echo "other-qemu-img: system $(/usr/bin/qemu-img --version | head -1); other $("$alt" --version | head -1)"

export ISOLIB_REQUIRE_QEMU_IMG=1
unshare -m --propagation private bash -euo pipefail -c '
  mount --bind "$1" /usr/bin/qemu-img
  cd "$2"
  echo "other-qemu-img: now $(/usr/bin/qemu-img --version | head -1)"
  cargo test --lib -- content_check image_refs
  tests/.venv/bin/pytest -q -p no:cacheprovider tests/py/test_content_check.py
' other-qemu-img "$alt" "$ROOT"
