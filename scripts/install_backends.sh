#!/usr/bin/env bash
# Install what the local stack needs, idempotently: the Python environment (uv sync from
# uv.lock), the OpenTelemetry Collector (built with OCB from otel-collector/builder-config.yaml)
# and Jaeger v2 (built from jaeger/build/). Binaries go to a per-user cache outside the clone,
# named by version and by a hash of their build inputs, so a fresh clone, CI on the same machine
# and a second checkout reuse them, and a changed pin builds anew.
#
#   scripts/install_backends.sh            # install whatever is missing
#   scripts/install_backends.sh --paths    # print the binaries' paths (installs nothing)
#   scripts/install_backends.sh --python   # only the Python environment
#   scripts/install_backends.sh --test-tools   # + Debian's chromium and the scale-out collector
#   scripts/install_backends.sh --bench-tools  # + Debian's wrk, for make bench
#   scripts/install_backends.sh --opensearch   # + OpenSearch (Maven Central) and its run user
#   scripts/install_backends.sh --chart-tools  # + helm and kubeconform (go install), for the chart
#   scripts/install_backends.sh --kafka        # + Kafka (Maven Central), the ingestion buffer
#
# Environment: OTEL_STACK_BIN_DIR (default ${XDG_CACHE_HOME:-~/.cache}/otel-order-stack/bin);
# OTEL_STACK_OPENSEARCH_DIR, where root installs OpenSearch (default /opt/otel-order-stack).
set -euo pipefail

# The pinned releases, written here once; tests/compose_model.py reads them from this file and
# checks that otel-collector/*builder-config.yaml, jaeger/build/go.mod and docker-compose.yml's
# image tags agree. README "Moving to newer releases" says how to bump them.
COLLECTOR_VERSION=0.165.0   # the otel/opentelemetry-collector-contrib tag in docker-compose.yml
SCALE_OUT_COLLECTOR_VERSION=0.161.0  # see otel-collector/scale-out/builder-config.yaml
JAEGER_VERSION=2.12.0       # the jaegertracing/jaeger tag in docker-compose.yml
JAEGER_MODULE_VERSION=v1.75.0  # Jaeger v2.x is released from its module's v1.x tags
UV_VERSION=0.13.9  # the same uv the Dockerfiles install
# Jaeger on OpenSearch (jaeger/scale-out/config-opensearch.yaml, `make up STORAGE=opensearch`):
# the integ-test zip is the plain distribution without a bundled JDK, served by Maven Central;
# 2.19.x is the last line that runs on Java 17.
OPENSEARCH_VERSION=2.19.6
OPENSEARCH_ARTIFACT="org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION:zip"
OPENSEARCH_USER=opensearch  # OpenSearch refuses to run as root; stackctl runs it as this user
# Kafka between the gateways and Jaeger (docs/scale-out.md): the broker's jars and their
# dependencies from Maven Central, run on the machine's Java 17 in KRaft mode.
KAFKA_VERSION=4.1.1
KAFKA_LOG4J_VERSION=2.24.3  # the log4j-core Kafka brings; its slf4j binding gives Kafka logs
# The chart's offline checks (tests/scale_out/test_helm_chart.py): built from source with Go.
HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${OTEL_STACK_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-order-stack/bin}"

say() { printf '\033[1m[install]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[install] error:\033[0m %s\n' "$*" >&2; exit 1; }

inputs_hash() { cat "$@" | sha256sum | cut -c1-12; }
# collector_bin [dist name] [manifest] [version]: the main collector, or the scale-out build.
collector_bin() {
  local name="${1:-otelcol-order-stack}" manifest="${2:-$ROOT/otel-collector/builder-config.yaml}"
  echo "$BIN_DIR/$name-${3:-$COLLECTOR_VERSION}-$(inputs_hash "$manifest")"
}
SCALE_OUT=(otelcol-order-stack-scale-out "$ROOT/otel-collector/scale-out/builder-config.yaml"
  "$SCALE_OUT_COLLECTOR_VERSION")
jaeger_bin() {
  echo "$BIN_DIR/jaeger-$JAEGER_MODULE_VERSION-$(inputs_hash "$ROOT/jaeger/build/go.mod" "$ROOT/jaeger/build/go.sum")"
}

# As root, OpenSearch runs as OPENSEARCH_USER, which must be able to read its install: root's
# own cache (in /root, mode 0700) is out of its reach, so it goes to /opt.
# is_cached <target> <label>: say so and succeed when that exact build is already installed.
is_cached() { [[ -x "$1" ]] && say "$2: cached at $1"; }

opensearch_home() {
  local dir="$BIN_DIR"
  (( EUID == 0 )) && dir="${OTEL_STACK_OPENSEARCH_DIR:-/opt/otel-order-stack}"
  echo "$dir/opensearch-$OPENSEARCH_VERSION"
}
kafka_home() { echo "$BIN_DIR/kafka-$KAFKA_VERSION"; }
helm_bin() { echo "$BIN_DIR/helm-$HELM_VERSION"; }
kubeconform_bin() { echo "$BIN_DIR/kubeconform-$KUBECONFORM_VERSION"; }

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

# install_collector [dist name] [manifest] [version]: build with OCB unless that exact build is cached.
install_collector() {
  local name="${1:-otelcol-order-stack}" manifest="${2:-$ROOT/otel-collector/builder-config.yaml}"
  local version="${3:-$COLLECTOR_VERSION}"
  local target; target="$(collector_bin "$name" "$manifest" "$version")"
  is_cached "$target" "$name $version" && return
  require_go
  mkdir -p "$BIN_DIR"
  local work; work="$(mktemp -d)"
  say "$name $version: installing OCB (go install .../cmd/builder@v$version)"
  run_long "installing OCB" env GOBIN="$work" \
    go install "go.opentelemetry.io/collector/cmd/builder@v$version"
  cp "$manifest" "$work/manifest.yaml"
  say "$name $version: building from ${manifest#"$ROOT"/} (1-2 min cold)"
  run_long "building the collector" bash -c "cd '$work' && ./builder --config manifest.yaml"
  install -m 0755 "$work/dist/$name" "$target.tmp" && mv "$target.tmp" "$target"
  rm -rf "$work"
  say "$name $version: installed $target"
}

install_jaeger() {
  local target; target="$(jaeger_bin)"
  if [[ -x "$target" ]]; then
    say "jaeger $JAEGER_MODULE_VERSION (v$JAEGER_VERSION): cached at $target"
    return
  fi
  require_go
  mkdir -p "$BIN_DIR"
  say "jaeger $JAEGER_MODULE_VERSION (v$JAEGER_VERSION): building cmd/jaeger from jaeger/build (about 3 min cold)"
  run_long "building Jaeger" bash -c "cd '$ROOT/jaeger/build' && go build -mod=readonly -trimpath \
    -o '$target.tmp' github.com/jaegertracing/jaeger/cmd/jaeger"
  mv "$target.tmp" "$target"
  say "jaeger: installed $target"
}

# install_debian_package <command path> <package> <why>: apt-get, only when it is missing.
install_debian_package() {
  [[ -x "$1" ]] && return
  local sudo=()
  (( EUID == 0 )) || sudo=(sudo)
  say "installing Debian's $2 ($3)"
  run_long "installing $2" bash -c "${sudo[*]} apt-get update -q && \
    DEBIAN_FRONTEND=noninteractive ${sudo[*]} apt-get install -y -q $2"
}

# require_maven_and_java <what>: the Java backends come from Maven Central and run on the
# machine's Java; Debian's maven and openjdk-17-jre-headless when either is missing.
require_maven_and_java() {
  command -v mvn >/dev/null 2>&1 || install_debian_package /usr/bin/mvn maven \
    "fetches $1 from Maven Central"
  command -v java >/dev/null 2>&1 || install_debian_package /usr/bin/java openjdk-17-jre-headless \
    "runs $1"
}

# OpenSearch: the zip through Maven (its own cache, ~/.m2, keeps the download), unpacked into
# the binaries' cache; a system user to run it.
install_opensearch() {
  require_maven_and_java OpenSearch
  local home; home="$(opensearch_home)"
  if [[ -x "$home/bin/opensearch" ]]; then
    say "opensearch $OPENSEARCH_VERSION: cached at $home"
  else
    mkdir -p "$(dirname "$home")"
    local work; work="$(mktemp -d)"
    say "opensearch $OPENSEARCH_VERSION: fetching $OPENSEARCH_ARTIFACT from Maven Central (57 MB)"
    run_long "fetching OpenSearch" mvn -B -q \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      "-Dartifact=$OPENSEARCH_ARTIFACT" "-DoutputDirectory=$work"
    say "opensearch $OPENSEARCH_VERSION: unpacking"
    [[ -x /usr/bin/unzip ]] || install_debian_package /usr/bin/unzip unzip "unpacks OpenSearch"
    (cd "$work" && unzip -q "opensearch-$OPENSEARCH_VERSION.zip") || die "could not unpack OpenSearch"
    chmod -R a+rX "$work/opensearch-$OPENSEARCH_VERSION"
    rm -rf "$home.tmp" && mv "$work/opensearch-$OPENSEARCH_VERSION" "$home.tmp" && mv "$home.tmp" "$home"
    rm -rf "$work"
    say "opensearch $OPENSEARCH_VERSION: installed $home"
  fi
  if (( EUID == 0 )) && ! id -u "$OPENSEARCH_USER" >/dev/null 2>&1; then
    say "creating the system user '$OPENSEARCH_USER' (OpenSearch refuses to run as root)"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OPENSEARCH_USER" \
      || die "could not create the user '$OPENSEARCH_USER'"
  fi
}

install_kafka() {
  local home; home="$(kafka_home)"
  if [[ -f "$home/lib/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    say "kafka $KAFKA_VERSION: cached at $home"
    return
  fi
  require_maven_and_java Kafka
  local work; work="$(mktemp -d)"
  local dep='<dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>'
  # shellcheck disable=SC2059
  printf '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local</groupId><artifactId>kafka-dist</artifactId><version>1</version><dependencies>
%s%s%s</dependencies></project>\n' \
    "$(printf "$dep" org.apache.kafka kafka_2.13 "$KAFKA_VERSION")" \
    "$(printf "$dep" org.apache.kafka kafka-tools "$KAFKA_VERSION")" \
    "$(printf "$dep" org.apache.logging.log4j log4j-slf4j-impl "$KAFKA_LOG4J_VERSION")" \
    >"$work/pom.xml"
  say "kafka $KAFKA_VERSION: fetching org.apache.kafka:kafka_2.13 and its dependencies from Maven Central (54 MB)"
  run_long "fetching Kafka" mvn -B -q -f "$work/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime "-DoutputDirectory=$work/lib"
  mkdir -p "$home.tmp" && rm -rf "$home.tmp/lib" && mv "$work/lib" "$home.tmp/lib"
  rm -rf "$home" && mv "$home.tmp" "$home" && rm -rf "$work"
  say "kafka $KAFKA_VERSION: installed $home"
}

# install_go_tool <target> <module path of the main package> <version>: go install, cached.
install_go_tool() {
  local target="$1" package="$2" version="$3" name="${1##*/}"
  is_cached "$target" "$name" && return
  require_go
  mkdir -p "$BIN_DIR"
  local work; work="$(mktemp -d)"
  say "$name: go install $package@$version (a few minutes cold)"
  run_long "building $name" env GOBIN="$work" go install "$package@$version"
  install -m 0755 "$work/${package##*/}" "$target.tmp" && mv "$target.tmp" "$target"
  rm -rf "$work"
  say "$name: installed $target"
}

install_chart_tools() {
  install_go_tool "$(helm_bin)" helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
  install_go_tool "$(kubeconform_bin)" github.com/yannh/kubeconform/cmd/kubeconform \
    "$KUBECONFORM_VERSION"
}

case "${1:-}" in
  --paths)
    echo "OTELCOL=$(collector_bin)"
    echo "JAEGER=$(jaeger_bin)"
    echo "OTELCOL_SCALE_OUT=$(collector_bin "${SCALE_OUT[@]}")"
    echo "OPENSEARCH_HOME=$(opensearch_home)"
    echo "KAFKA_HOME=$(kafka_home)"
    echo "HELM=$(helm_bin)"
    echo "KUBECONFORM=$(kubeconform_bin)"
    ;;
  --python) install_python ;;
  --test-tools)
    install_debian_package /usr/bin/chromium chromium "renders the analyzer's HTML report in tests"
    install_collector "${SCALE_OUT[@]}"
    install_opensearch
    install_kafka
    install_chart_tools
    ;;
  --kafka) install_kafka ;;
  --opensearch) install_opensearch ;;
  --chart-tools) install_chart_tools ;;
  --bench-tools) install_debian_package /usr/bin/wrk wrk "drives the benchmark" ;;
  "") install_python; install_collector; install_jaeger ;;
  *) die "unknown argument '$1' (use --paths, --python, --test-tools, --bench-tools, --opensearch, --kafka, --chart-tools or nothing)" ;;
esac
