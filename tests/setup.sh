#!/usr/bin/env bash
# Idempotent test-environment setup for isolib's end-to-end suite.
# Works on a fresh Debian bookworm machine as root. Installs only what is missing.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"

PROXMOXER_VERSION=2.3.0
REQUESTS_VERSION=2.34.2
PYTEST_VERSION=9.2.0

# --- QEMU and iPXE, for the network boot test ---------------------------------------------
# First: Debian 12's qemu-system-x86 may take the place of a newer qemu-utils, which the check
# below then installs again, as Debian 12's.
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || [ ! -e /usr/lib/ipxe/ipxe.iso ] ||
   [ ! -e /usr/lib/ipxe/qemu/efi-virtio.rom ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install qemu-system-x86, ipxe-qemu and ipxe" >&2
    exit 1
  fi
  echo "setup: installing: qemu-system-x86 ipxe-qemu ipxe"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends qemu-system-x86 ipxe-qemu ipxe iproute2 >/dev/null
fi

# --- Debian packages (command -> package) --------------------------------------------------
declare -A NEED=(
  [nginx]=nginx-light
  [lzop]=lzop
  [zstd]=zstd
  [bzip2]=bzip2
  [xz]=xz-utils
  [qemu-img]=qemu-utils
  [tar]=tar
  [gzip]=gzip
  [node]=nodejs
  [npm]=npm
  [strace]=strace
  [prove]=perl
  [xorriso]=xorriso
  [gpg]=gnupg
)
missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${NEED[$cmd]}")
  fi
done
# the daemon links libpam (the pam realm)
if [ ! -e /usr/include/security/pam_appl.h ]; then
  missing+=(libpam0g-dev)
fi
# the catalog names an ISO's OS by osinfo-db's media entries
if [ ! -d /usr/share/osinfo/os ]; then
  missing+=(osinfo-db)
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # the nginx package starts a system service on :80 which the tests do not use
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
  if [ -x /etc/init.d/nginx ]; then /etc/init.d/nginx stop >/dev/null 2>&1 || true; fi
fi

# --- Python venv -----------------------------------------------------------------------------
VENV="$HERE/.venv"
want="proxmoxer==$PROXMOXER_VERSION requests==$REQUESTS_VERSION pytest==$PYTEST_VERSION"
stamp="$VENV/.isolib-reqs"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check $want
  echo "$want" > "$stamp"
fi

# --- Node packages ---------------------------------------------------------------------------
cd "$HERE/node"
if [ ! -d node_modules/proxmox-api ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
fi
echo "setup: ok"
