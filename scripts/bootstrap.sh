#!/usr/bin/env bash
# Installs whatever OncoFlow needs and is missing, then exits. Idempotent and quick when all is there.
#  1. Debian packages (Orthanc, its Python, DICOMweb and PostgreSQL plugins, dcmtk, dicom3tools, anatomy templates,
#     the PostgreSQL server). The packaged Orthanc and PostgreSQL
#     services are never started: OncoFlow runs Orthanc and its own PostgreSQL clusters as its processes.
#  2. The heavy Python dependencies (torch, nnU-Net, highdicom, ...) in a virtualenv cached under
#     ${ONCOFLOW_CACHE:-~/.cache/oncoflow}, keyed by the hash of requirements.lock and requirements-nodeps.lock, built with Debian's
#     python3.11: the interpreter that orthanc-python embeds.
#  3. A light per-checkout .venv that sees the cached dependencies (a .pth file) and holds this
#     checkout as an editable install, so several clones can share one dependency cache.
#  4. The OHIF viewer (npm @ohif/app, re-rooted to /ohif/, in the same cache) and the browser tests' npm packages.
#  5. Keycloak's server (Maven Central), unpacked and built in the same cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

apt_packages=(orthanc orthanc-python orthanc-dicomweb dcmtk dicom3tools mricron-data python3.11-venv poppler-utils
              chromium openjdk-17-jre-headless maven postgresql orthanc-postgresql
              fonts-dejavu-core fonts-wqy-zenhei)  # report PDF and Chromium: Hebrew, Arabic, Cyrillic, CJK glyphs
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  policy=/usr/sbin/policy-rc.d; made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null; $sudo chmod +x "$policy"; made_policy=1; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$made_policy" = 1 ] && $sudo rm -f "$policy"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now orthanc postgresql || true
  fi
fi

cache=${ONCOFLOW_CACHE:-$HOME/.cache/oncoflow}
key=$(cat requirements.lock requirements-nodeps.lock | sha256sum | cut -c1-16)
deps="$cache/deps-$key"
if [ ! -f "$deps/.complete" ]; then
  echo "bootstrap: building the dependency cache $deps (first run: several minutes)"
  rm -rf "$deps"; mkdir -p "$cache"
  /usr/bin/python3.11 -m venv "$deps"
  "$deps/bin/pip" install -q --upgrade pip
  "$deps/bin/pip" install -q -r requirements.lock
  "$deps/bin/pip" install -q --no-deps -r requirements-nodeps.lock
  touch "$deps/.complete"
fi

site=lib/python3.11/site-packages
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.deps 2>/dev/null)" != "$deps" ] \
   || [ pyproject.toml -nt .venv/.deps ]; then
  rm -rf .venv
  /usr/bin/python3.11 -m venv --without-pip .venv
  echo "$deps/$site" > ".venv/$site/oncoflow-deps.pth"
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . > .venv/install.log 2>&1 \
    || { cat .venv/install.log >&2; exit 1; }
  echo "$deps" > .venv/.deps
fi
.venv/bin/python -c "import oncoflow, oncoflow_plugin, oncoflow_inference, torch, nnunetv2, highdicom" \
  || { echo "bootstrap: the environment is broken; remove .venv and $deps" >&2; exit 1; }

# OHIF viewer (issue 6): @ohif/app re-rooted to /ohif/ in the cache (skipped when its marker is fresh), and
# the browser tests' playwright-core (npm ci, skipped while node_modules matches the lock; no browser is
# downloaded: the tests drive Debian's /usr/bin/chromium).
command -v npm >/dev/null || { echo "bootstrap: npm (Node 20) is needed for the OHIF viewer" >&2; exit 1; }
.venv/bin/python -m oncoflow.services.ohif_viewer prepare >/dev/null
browser_tests=ohif-extension/browser-tests
if [ ! -f "$browser_tests/node_modules/.package-lock.json" ] \
   || [ "$browser_tests/package-lock.json" -nt "$browser_tests/node_modules/.package-lock.json" ]; then
  echo "bootstrap: npm ci in $browser_tests"
  (cd "$browser_tests" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
# The OncoFlow OHIF extension and mode (TypeScript): npm ci when node_modules does not match the lock,
# npm run build when dist/ is missing or older than any source file.
extension=ohif-extension
if [ ! -f "$extension/node_modules/.package-lock.json" ] \
   || [ "$extension/package-lock.json" -nt "$extension/node_modules/.package-lock.json" ]; then
  echo "bootstrap: npm ci in $extension"
  (cd "$extension" && npm ci --no-audit --no-fund --loglevel=error)
fi
built="$extension/dist/oncoflow-mode.mjs"
if [ ! -f "$built" ] || [ -n "$(find "$extension/src" "$extension/package.json" -newer "$built" -print -quit)" ]; then
  echo "bootstrap: building the OncoFlow OHIF extension"
  (cd "$extension" && npm run --silent build)
fi

# Keycloak (issue 7): keycloak-quarkus-dist from Maven Central (checksums strict), unpacked and built once in
# the cache; quick when present.
.venv/bin/python -m oncoflow.services.keycloak_server fetch >/dev/null

# Docker Compose v5 (issue 8): the `docker compose` client plugin, built once from the Go module proxy
# (deploy/compose-cli pins it) and linked into ~/.docker/cli-plugins, to validate docker-compose.yml; no engine
# runs here. Skipped when `docker compose` already answers or there is no docker client to plug into.
compose_version=$(sed -n 's/^require github.com\/docker\/compose\/v5 //p' deploy/compose-cli/go.mod)
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; then
  compose_bin="$cache/docker-compose-$compose_version"
  if [ ! -x "$compose_bin" ]; then
    command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
    echo "bootstrap: building docker compose $compose_version (about a minute)"
    (cd deploy/compose-cli && go build -mod=mod -o "$compose_bin.tmp" \
       -ldflags "-X github.com/docker/compose/v5/internal.Version=$compose_version" github.com/docker/compose/v5/cmd) \
      && mv "$compose_bin.tmp" "$compose_bin"
  fi
  mkdir -p "$HOME/.docker/cli-plugins" && ln -sf "$compose_bin" "$HOME/.docker/cli-plugins/docker-compose"
fi
# The Compose Specification's JSON schema for tests/test_docker_compose.py, from the same compose-go module
# (already in Go's module cache when the client was built here; a quick no-op then).
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
if command -v go >/dev/null; then
  (cd deploy/compose-cli && go mod download github.com/compose-spec/compose-go/v2) \
    || echo "bootstrap: compose-go's schema not fetched (tests/test_docker_compose.py will say so)" >&2
fi
