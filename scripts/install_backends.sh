#!/usr/bin/env bash
# Install what the local stack needs, idempotently: the Python environment (uv sync from
# uv.lock), the OpenTelemetry Collector (built with OCB from otel-collector/builder-config.yaml)
# and Jaeger v2 (built from jaeger/build/). Binaries go to a per-user cache outside the clone,
# named by version and by a hash of their build inputs, so a fresh clone, CI on the same machine
# and a second checkout reuse them, and a changed pin builds anew.
#
#   scripts/install_backends.sh            # install whatever is missing
#   scripts/install_backends.sh --paths    # print OTELCOL=... and JAEGER=... (installs nothing)
#   scripts/install_backends.sh --python   # only the Python environment
#   scripts/install_backends.sh --test-tools  # Debian's chromium, for the HTML report test
#   scripts/install_backends.sh --bench-tools # Debian's wrk, for `make bench`
#
# Environment: OTEL_STACK_BIN_DIR (default ${XDG_CACHE_HOME:-~/.cache}/otel-order-stack/bin).
set -euo pipefail

COLLECTOR_VERSION=0.155.0   # the otel/opentelemetry-collector-contrib tag in docker-compose.yml
JAEGER_MODULE_VERSION=v1.76.0  # Jaeger v2.13.0 (jaegertracing/jaeger:2.13.0 in docker-compose.yml)
UV_VERSION=0.13.9  # the same uv the Dockerfiles install

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${OTEL_STACK_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-order-stack/bin}"

say() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[install] error:\033[0m %s\n' "$*" >&2; exit 1; }

inputs_hash() { cat "$@" | sha256sum | cut -c1-12; }
collector_bin() {
  echo "$BIN_DIR/otelcol-order-stack-$COLLECTOR_VERSION-$(inputs_hash "$ROOT/otel-collector/builder-config.yaml")"
}
jaeger_bin() {
  echo "$BIN_DIR/jaeger-$JAEGER_MODULE_VERSION-$(inputs_hash "$ROOT/jaeger/build/go.mod" "$ROOT/jaeger/build/go.sum")"
}

# Run a long command with a heartbeat line every 30 s; its output goes to a log shown on failure.
run_long() {
  local what="$1"; shift
  local log; log="$(mktemp)"
  local start=$SECONDS
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if (( (SECONDS - start) % 30 < 2 && SECONDS - start >= 30 )); then
      say "  ... still $what ($((SECONDS - start)) s)"
    fi
  done
  if ! wait "$pid"; then
    tail -n 40 "$log" >&2
    die "$what failed (full log: $log)"
  fi
  rm -f "$log"
  say "  done in $((SECONDS - start)) s"
}

require_go() {
  command -v go >/dev/null 2>&1 || die "Go is not installed (or not on PATH). The collector and \
Jaeger are built from source with Go >= 1.24: install it from your package manager or \
https://go.dev/dl/, then run this again."
}

install_python() {
  local uv
  if command -v uv >/dev/null 2>&1; then
    uv=(uv)
  elif python3 -m uv --version >/dev/null 2>&1; then
    uv=(python3 -m uv)
  else
    say "uv not found: installing uv==$UV_VERSION for this user (pip)"
    python3 -m pip install --quiet --user --disable-pip-version-check "uv==$UV_VERSION" \
      || die "could not install uv with pip; install it (https://docs.astral.sh/uv/) and retry"
    uv=(python3 -m uv)
  fi
  say "Python environment: ${uv[*]} sync --locked (.venv)"
  (cd "$ROOT" && "${uv[@]}" sync --locked --quiet) \
    || die "uv sync failed (is uv.lock out of date with pyproject.toml? run: uv lock)"
}

install_collector() {
  local target; target="$(collector_bin)"
  if [[ -x "$target" ]]; then
    say "collector $COLLECTOR_VERSION: cached at $target"
    return
  fi
  require_go
  mkdir -p "$BIN_DIR"
  local work; work="$(mktemp -d)"
  say "collector $COLLECTOR_VERSION: installing OCB (go install .../cmd/builder@v$COLLECTOR_VERSION)"
  run_long "installing OCB" env GOBIN="$work" \
    go install "go.opentelemetry.io/collector/cmd/builder@v$COLLECTOR_VERSION"
  cp "$ROOT/otel-collector/builder-config.yaml" "$work/manifest.yaml"
  say "collector $COLLECTOR_VERSION: building from otel-collector/builder-config.yaml (~5 min cold)"
  run_long "building the collector" bash -c "cd '$work' && ./builder --config manifest.yaml"
  install -m 0755 "$work/dist/otelcol-order-stack" "$target.tmp" && mv "$target.tmp" "$target"
  rm -rf "$work"
  say "collector $COLLECTOR_VERSION: installed $target"
}

install_jaeger() {
  local target; target="$(jaeger_bin)"
  if [[ -x "$target" ]]; then
    say "jaeger $JAEGER_MODULE_VERSION (v2.13.0): cached at $target"
    return
  fi
  require_go
  mkdir -p "$BIN_DIR"
  say "jaeger $JAEGER_MODULE_VERSION (v2.13.0): building cmd/jaeger from jaeger/build (~10 min cold)"
  run_long "building Jaeger" bash -c "cd '$ROOT/jaeger/build' && go build -mod=readonly -trimpath \
    -o '$target.tmp' github.com/jaegertracing/jaeger/cmd/jaeger"
  mv "$target.tmp" "$target"
  say "jaeger: installed $target"
}

# Debian packages the test suite needs: Chromium renders the analyzer's HTML report.
install_test_tools() {
  [[ -x /usr/bin/chromium ]] && return
  local sudo=()
  (( EUID == 0 )) || sudo=(sudo)
  say "test tools: installing Debian's chromium (apt-get)"
  run_long "installing chromium" bash -c "${sudo[*]} apt-get update -q && \
    DEBIAN_FRONTEND=noninteractive ${sudo[*]} apt-get install -y -q chromium"
}

# Debian packages the benchmark needs: wrk drives POST /api/orders (benchmarks/order.lua).
install_bench_tools() {
  command -v wrk >/dev/null 2>&1 && return
  local sudo=()
  (( EUID == 0 )) || sudo=(sudo)
  say "bench tools: installing Debian's wrk (apt-get)"
  run_long "installing wrk" bash -c "${sudo[*]} apt-get update -q && \
    DEBIAN_FRONTEND=noninteractive ${sudo[*]} apt-get install -y -q wrk"
}

case "${1:-}" in
  --paths) echo "OTELCOL=$(collector_bin)"; echo "JAEGER=$(jaeger_bin)" ;;
  --python) install_python ;;
  --test-tools) install_test_tools ;;
  --bench-tools) install_bench_tools ;;
  "") install_python; install_collector; install_jaeger ;;
  *) die "unknown argument '$1' (use --paths, --python, --test-tools, --bench-tools or nothing)" ;;
esac
