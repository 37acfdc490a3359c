#!/usr/bin/env bash
# Provisions a fresh Debian/Ubuntu machine (or a privileged CI VM) for cnm, as root:
# the Debian packages cnm and its tests use, and Node.js's npx to fetch the pinned Deno.
# Idempotent: installs only what is missing. Never changes the machine's networking.
set -euo pipefail

DENO_VERSION="${DENO_VERSION:-2.9.6}"
# command -> Debian package
declare -A NEED=(
  [ip]=iproute2 [ss]=iproute2 [nft]=nftables [ping]=iputils-ping [dig]=dnsutils
  [socat]=socat [nsenter]=util-linux [sysctl]=procps [ps]=procps [curl]=curl [npx]=npm
  [tcpdump]=tcpdump
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
  updated=1
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

# Installs packages with service starts forbidden during the install (policy-rc.d, also
# honoured by deb-systemd-invoke): a package's daemon (dockerd, etcd) must not start on the
# machine. A policy-rc.d already there is left as it is.
install_no_start() {
  local made_policy=0 rc=0
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  if [ -z "${updated:-}" ]; then
    apt-get update -qq || rc=$?
    updated=1
  fi
  [ "$rc" -ne 0 ] || apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}

# The Docker profile of the suite: docker.io (dockerd 20.10, containerd, runc) and
# busybox-static for the probe image. Installing docker.io must not start a system dockerd:
# policy-rc.d forbids service starts during the install (the suite runs its own private
# engine in a throwaway namespace). CNM_NO_DOCKER=1 skips this.
if [ "${CNM_NO_DOCKER:-0}" != "1" ]; then
  need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v containerd >/dev/null 2>&1 || need+=(containerd)
  [ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
  command -v iptables >/dev/null 2>&1 || need+=(iptables)
  # deno task bench: the embedded DNS under dnsperf
  command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
  if [ ${#need[@]} -gt 0 ]; then
    echo "provision: installing ${need[*]} (Docker profile)"
    install_no_start "${need[@]}" || echo "provision: Docker packages unavailable; the Docker profile will be skipped" >&2
  fi
fi

# The overlay's global store and the underlay tests: etcd-server and etcd-client (3.4; the
# tests run their own etcd in a throwaway namespace, so the package must not start a system
# one either), and iperf3 for throughput across hosts.
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
if [ ${#need[@]} -gt 0 ]; then
  echo "provision: installing ${need[*]} (overlay store, underlay tests)"
  if ! install_no_start "${need[@]}"; then
    echo "provision: could not install ${need[*]}" >&2
    exit 1
  fi
fi

# Deno comes from the npm registry (the `deno` package ships the native binary).
npx -y "deno@${DENO_VERSION}" --version >/dev/null
echo "provision: ready (deno ${DENO_VERSION} via npx)"
