#!/usr/bin/env bash
# Install the pinned Prometheus (server + promtool) from Debian, for the monitoring checks in `make test`.
#
# Idempotent: does nothing when the pinned version is already installed.  Debian's package starts a
# `prometheus` service on :9090 after installing; the tests start their own server on a free loopback port,
# so a policy-rc.d forbids starting services during the install and any instance started anyway is stopped.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-2.42.0+ds-5+deb12u1}"  # Debian 12 (bookworm)

installed="$(dpkg-query -W -f='${Status} ${Version}' prometheus 2>/dev/null || true)"
if [[ "$installed" == "install ok installed $PROMETHEUS_VERSION" ]] && command -v promtool >/dev/null; then
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    SUDO="sudo"
fi

policy=/usr/sbin/policy-rc.d
placed_policy=0
if [[ ! -e "$policy" ]]; then
    # exit code 101: "action forbidden", so invoke-rc.d starts no service while the package installs
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    placed_policy=1
fi
cleanup() {
    if [[ "$placed_policy" == 1 ]]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "prometheus=$PROMETHEUS_VERSION" >/dev/null

# Belt and braces: whatever init system there is, leave no packaged Prometheus running or enabled.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
    $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null && $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
fi

promtool --version | head -n 1
