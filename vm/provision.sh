#!/usr/bin/env bash
# Provisions a fresh Debian/Ubuntu machine (or a privileged CI VM) for cnm, as root:
# the Debian packages cnm and its tests use, and Node.js's npx to fetch the pinned Deno.
# Idempotent: installs only what is missing. Never changes the machine's networking.
set -euo pipefail

DENO_VERSION="${DENO_VERSION:-2.9.6}"
# command -> Debian package
declare -A NEED=(
  [ip]=iproute2 [ss]=iproute2 [nft]=nftables [ping]=iputils-ping [dig]=dnsutils
  [socat]=socat [nsenter]=util-linux [sysctl]=procps [npx]=npm
)

if [ "$(id -u)" -ne 0 ]; then
  echo "provision: run as root (cnm creates network namespaces)" >&2
  exit 1
fi

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "provision: installing $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

# Deno comes from the npm registry (the `deno` package ships the native binary).
npx -y "deno@${DENO_VERSION}" --version >/dev/null
echo "provision: ready (deno ${DENO_VERSION} via npx)"
