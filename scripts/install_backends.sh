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
#   scripts/install_backends.sh --check-go # is there a Go that can build the collector and Jaeger?
#   scripts/install_backends.sh --test-tools   # + Debian's chromium and the scale-out collector
#   scripts/install_backends.sh --bench-tools  # + Debian's wrk, for make bench
#   scripts/install_backends.sh --quiet ...    # say nothing about what is already installed
#   scripts/install_backends.sh --docker   # Debian's Docker Engine and debootstrap, and the
#                                          # compose and buildx CLI plugins built with Go
#   scripts/install_backends.sh --opensearch   # + OpenSearch (Maven Central) and its run user
#   scripts/install_backends.sh --chart-tools  # + helm and kubeconform (go install), for the chart
#   scripts/install_backends.sh --kafka        # + Kafka (Maven Central), the ingestion buffer
#   scripts/install_backends.sh --postgres     # + Debian's postgresql (the shared store) and
#                                              # haproxy (in front of replicas)
#   scripts/install_backends.sh --cluster      # + a single-node Kubernetes for the chart's
#                                              # cluster tier: Debian's containerd, runc and CNI
#                                              # plugins; Kubernetes, etcd, CoreDNS built with Go
#
# Environment: OTEL_STACK_BIN_DIR (default ${XDG_CACHE_HOME:-~/.cache}/otel-order-stack/bin);
# OTEL_STACK_OPENSEARCH_DIR, where root installs OpenSearch (default /opt/otel-order-stack).
# What it puts on the machine, and how to remove it: docs/troubleshooting.md.
set -euo pipefail

# The pinned releases, written here once; tests/compose_model.py reads them from this file and
# checks that otel-collector/*builder-config.yaml, jaeger/build/go.mod and docker-compose.yml's
# image tags agree. docs/operations.md "Moving to newer releases" says how to bump them.
COLLECTOR_VERSION=0.165.0   # the otel/opentelemetry-collector-contrib tag in docker-compose.yml
SCALE_OUT_COLLECTOR_VERSION=0.161.0  # see otel-collector/scale-out/builder-config.yaml
JAEGER_VERSION=2.12.0       # the jaegertracing/jaeger tag in docker-compose.yml
JAEGER_MODULE_VERSION=v1.75.0  # Jaeger v2.x is released from its module's v1.x tags
UV_VERSION=0.13.9  # the same uv the Dockerfiles install
COMPOSE_VERSION=v5.6.0   # github.com/docker/compose/v5, the `docker compose` CLI plugin
BUILDX_VERSION=v0.38.2   # github.com/docker/buildx (compose builds through it; >= v0.17)
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
# The chart's cluster tier (tests/cluster/): built from the Go module proxy. Kubernetes stays on
# 1.34, the last line that runs on containerd 1.x and cgroup v1 (Debian 12's, these machines').
KUBERNETES_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
COREDNS_VERSION=v1.15.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${OTEL_STACK_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-order-stack/bin}"

QUIET=0
if [[ "${1:-}" == "--quiet" ]]; then QUIET=1; shift; fi
# Colour only on a terminal: piped or logged output gets plain text.
if [[ -t 2 ]]; then BOLD=$'\033[1m' RED=$'\033[31m' PLAIN=$'\033[0m'; else BOLD='' RED='' PLAIN=''; fi
say() { printf '%s[install]%s %s\n' "$BOLD" "$PLAIN" "$*" >&2; }
die() { printf '%s[install] error:%s %s\n' "$RED" "$PLAIN" "$*" >&2; exit 1; }
# What is already in place: said by `make install`, silent under --quiet (make up, status, demo).
note() { (( QUIET )) || say "$@"; }

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
is_cached() { [[ -x "$1" ]] && note "$2: cached at $1"; }

opensearch_home() {
  local dir="$BIN_DIR"
  (( EUID == 0 )) && dir="${OTEL_STACK_OPENSEARCH_DIR:-/opt/otel-order-stack}"
  echo "$dir/opensearch-$OPENSEARCH_VERSION"
}
kafka_home() { echo "$BIN_DIR/kafka-$KAFKA_VERSION"; }
helm_bin() { echo "$BIN_DIR/helm-$HELM_VERSION"; }
kubeconform_bin() { echo "$BIN_DIR/kubeconform-$KUBECONFORM_VERSION"; }
# The cluster's programs: one folder per Kubernetes release, etcd and CoreDNS beside it.
kubernetes_dir() { echo "$BIN_DIR/kubernetes-$KUBERNETES_VERSION"; }
etcd_bin() { echo "$BIN_DIR/etcd-$ETCD_VERSION"; }
coredns_bin() { echo "$BIN_DIR/coredns-$COREDNS_VERSION"; }
KUBERNETES_PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

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

# The oldest Go that builds both: the `go` line of the Jaeger build module (written once there).
go_required() { sed -n 's/^go \([0-9.]*\)$/\1/p' "$ROOT/jaeger/build/go.mod"; }

require_go() {
  local need; need="$(go_required)"
  command -v go >/dev/null 2>&1 || die "Go is not installed (or not on PATH). The collector and \
Jaeger are built from source once, with Go >= $need: install it from https://go.dev/dl/ (a \
distribution's package may be older: Debian 12's golang-go is 1.19), then run this again."
  local have; have="$(go env GOVERSION 2>/dev/null)"; have="${have#go}"; have="${have%% *}"
  if [[ -z "$have" || "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]]; then
    die "Go ${have:-of unknown version} is at $(command -v go), and the collector and Jaeger \
need Go >= $need (Debian 12's golang-go is 1.19). Install a newer Go from https://go.dev/dl/ \
and put it first on PATH (export PATH=/usr/local/go/bin:\$PATH), then run this again."
  fi
}

# What the environment is made from; .venv/.synced holds it after a sync, so an unchanged
# environment costs no `uv sync` (about a second) on every make target.
python_inputs() { inputs_hash "$ROOT/uv.lock" "$ROOT/pyproject.toml"; }

install_python() {
  if [[ -x "$ROOT/.venv/bin/python" && "$(cat "$ROOT/.venv/.synced" 2>/dev/null)" == "$(python_inputs)" ]]; then
    note "Python environment: up to date (.venv)"
    return
  fi
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
  python_inputs >"$ROOT/.venv/.synced"
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
  # A temporary name of this run's own: two checkouts building at once each finish their move.
  install -m 0755 "$work/dist/$name" "$target.tmp.$$" && mv -f "$target.tmp.$$" "$target"
  rm -rf "$work"
  say "$name $version: installed $target"
}

install_jaeger() {
  local target; target="$(jaeger_bin)"
  is_cached "$target" "jaeger $JAEGER_MODULE_VERSION (v$JAEGER_VERSION)" && return
  require_go
  mkdir -p "$BIN_DIR"
  say "jaeger $JAEGER_MODULE_VERSION (v$JAEGER_VERSION): building cmd/jaeger from jaeger/build (about 3 min cold)"
  run_long "building Jaeger" bash -c "cd '$ROOT/jaeger/build' && go build -mod=readonly -trimpath \
    -o '$target.tmp.$$' github.com/jaegertracing/jaeger/cmd/jaeger"
  mv -f "$target.tmp.$$" "$target"
  say "jaeger: installed $target"
}

# docker_plugin_bin <compose|buildx>: the cached build of a CLI plugin at its pinned version.
docker_plugin_bin() {
  case "$1" in
    compose) echo "$BIN_DIR/docker-compose-$COMPOSE_VERSION" ;;
    buildx) echo "$BIN_DIR/docker-buildx-$BUILDX_VERSION" ;;
  esac
}
DOCKER_PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

# install_docker_plugin <name> <module> <version> <main package> <version variable>: `go install`
# refuses these modules (their go.mod has replace and exclude directives), so the module is
# downloaded from the Go module proxy, copied somewhere writable and built there with `go build`.
# The version is linked in: compose refuses a buildx that reports a version below 0.17.
install_docker_plugin() {
  local name="$1" module="$2" version="$3" main="$4" var="$5"
  local target; target="$(docker_plugin_bin "$name")"
  if [[ ! -x "$target" ]]; then
    require_go
    mkdir -p "$BIN_DIR"
    local work; work="$(mktemp -d)"
    say "docker $name $version: downloading $module@$version (Go module proxy)"
    local dir
    dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version" \
      | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$dir" ]] || die "go mod download $module@$version gave no module directory"
    cp -r "$dir" "$work/src" && chmod -R u+w "$work/src"
    say "docker $name $version: building $main (a few minutes cold)"
    run_long "building docker $name" bash -c "cd '$work/src' && go build -mod=readonly \
      -trimpath -ldflags '-s -w -X $var=$version' -o '$target.tmp.$$' $main"
    mv "$target.tmp.$$" "$target"
    rm -rf "$work"
    say "docker $name $version: built $target"
  else
    note "docker $name $version: cached at $target"
  fi
  mkdir -p "$DOCKER_PLUGIN_DIR"
  cmp -s "$target" "$DOCKER_PLUGIN_DIR/docker-$name" \
    || install -m 0755 "$target" "$DOCKER_PLUGIN_DIR/docker-$name"
}

install_docker() {
  if command -v dockerd >/dev/null 2>&1; then
    say "Docker Engine: $(command -v dockerd) present"
  else
    install_debian_package /usr/sbin/dockerd docker.io "the Docker Engine the compose tier runs on"
  fi
  install_debian_package /usr/sbin/debootstrap debootstrap "the root filesystem of the stand-in images"
  install_docker_plugin buildx github.com/docker/buildx "$BUILDX_VERSION" ./cmd/buildx \
    github.com/docker/buildx/version.Version
  install_docker_plugin compose github.com/docker/compose/v5 "$COMPOSE_VERSION" ./cmd \
    github.com/docker/compose/v5/internal.Version
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

# PostgreSQL, the shared store (DATABASE_URL; tests/postgres.py starts throwaway clusters with
# its binaries), and HAProxy, the load balancer in front of replicas: Debian's packages. The
# stack and the tests run clusters of their own, not the one the package may set up.
install_postgres() {
  local initdb
  initdb="$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true)"
  install_debian_package "${initdb:-/usr/lib/postgresql/bin/initdb}" postgresql \
    "the shared store (DATABASE_URL) and its tests"
  install_debian_package /usr/sbin/haproxy haproxy "the load balancer in front of replicas"
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
    note "opensearch $OPENSEARCH_VERSION: cached at $home"
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
    note "kafka $KAFKA_VERSION: cached at $home"
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

# Kubernetes from the Go module proxy: k8s.io/kubernetes is not meant to be a dependency (its
# go.mod points its 31 staging modules at ./staging), so a small wrapper module requires it and
# replaces each staging module with the published k8s.io/X v0.MINOR.PATCH. The version is linked
# in (component-base and client-go): without it the node reports v0.0.0 and the chart's
# kubeVersion check refuses it. Low priority: the machine's cores are shared.
build_kubernetes() {
  local dir; dir="$(kubernetes_dir)"
  local work="$BIN_DIR/.build/kubernetes-$KUBERNETES_VERSION"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$work" "$dir"
  if [[ ! -f "$work/go.sum" ]]; then
    say "kubernetes $KUBERNETES_VERSION: the wrapper module (go mod download, go mod tidy)"
    local mod
    mod="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
      | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
    [[ -f "$mod" ]] || die "go mod download k8s.io/kubernetes@$KUBERNETES_VERSION gave no go.mod"
    {
      printf 'module otel-order-stack/kubernetes\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
        "$KUBERNETES_VERSION"
      awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " " v}' "$mod"
      echo ')'
    } >"$work/go.mod"
    {
      printf '//go:build tools\n\n// Package tools pins the programs this module builds.\npackage tools\n\nimport (\n'
      local p; for p in "${KUBERNETES_PROGRAMS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$p"; done
      echo ')'
    } >"$work/tools.go"
    run_long "resolving the Kubernetes modules" bash -c "cd '$work' && go mod tidy"
  fi
  local ldflags="-s -w" pkg minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  local p
  for p in "${KUBERNETES_PROGRAMS[@]}"; do
    [[ -x "$dir/$p" ]] && continue
    say "kubernetes $KUBERNETES_VERSION: building $p (all six: about 25 min cold on 2 busy cores)"
    run_long "building $p" bash -c "cd '$work' && nice -n 19 go build -trimpath \
      -ldflags '$ldflags' -o '$dir/$p.tmp' k8s.io/kubernetes/cmd/$p && mv '$dir/$p.tmp' '$dir/$p'"
  done
}

# etcd's server module has replace directives, so `go install module@version` refuses it: a
# wrapper module requires its five modules at one release.
build_etcd() {
  local target; target="$(etcd_bin)"
  is_cached "$target" "etcd $ETCD_VERSION" && return
  local work="$BIN_DIR/.build/etcd-$ETCD_VERSION" m
  mkdir -p "$work"
  {
    printf 'module otel-order-stack/etcd\n\ngo 1.26.0\n\nrequire (\n'
    for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
      printf '\tgo.etcd.io/etcd/%s %s\n' "$m" "$ETCD_VERSION"
    done
    echo ')'
  } >"$work/go.mod"
  printf '//go:build tools\n\n// Package tools pins the program this module builds.\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' \
    >"$work/tools.go"
  say "etcd $ETCD_VERSION: building go.etcd.io/etcd/server/v3 (about 1 min cold)"
  run_long "building etcd" bash -c "cd '$work' && go mod tidy && nice -n 19 go build -trimpath \
    -ldflags '-s -w' -o '$target.tmp' go.etcd.io/etcd/server/v3 && mv '$target.tmp' '$target'"
}

# The cluster's DNS; static (CGO_ENABLED=0), since its image holds nothing else.
build_coredns() {
  local target; target="$(coredns_bin)"
  is_cached "$target" "coredns $COREDNS_VERSION" && return
  local work; work="$(mktemp -d)"
  say "coredns $COREDNS_VERSION: go install github.com/coredns/coredns@$COREDNS_VERSION"
  run_long "building CoreDNS" env GOBIN="$work" CGO_ENABLED=0 nice -n 19 go install -trimpath \
    -ldflags '-s -w' "github.com/coredns/coredns@$COREDNS_VERSION"
  install -m 0755 "$work/coredns" "$target.tmp" && mv "$target.tmp" "$target"
  rm -rf "$work"
}

# The Pods' sandbox: Kubernetes' own pause.c (in the module's build/pause), static, no registry.
build_pause() {
  local target="$(kubernetes_dir)/pause"
  is_cached "$target" "pause ($KUBERNETES_VERSION)" && return
  command -v gcc >/dev/null 2>&1 || install_debian_package /usr/bin/gcc gcc "compiles the pause program"
  local src
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
  [[ -f "$src" ]] || (cd "$BIN_DIR/.build/kubernetes-$KUBERNETES_VERSION" && \
    go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION")
  gcc -Os -static "-DVERSION=$KUBERNETES_VERSION" -o "$target.tmp" "$src" \
    && strip "$target.tmp" && mv "$target.tmp" "$target" || die "could not compile $src"
}

install_cluster() {
  (( EUID == 0 )) || die "the cluster tier runs containerd and the kubelet: it needs root"
  install_debian_package /usr/bin/containerd containerd "the cluster's container runtime"
  install_debian_package /usr/sbin/runc runc "runs the cluster's containers"
  install_debian_package /usr/lib/cni/bridge containernetworking-plugins "the Pods' network"
  install_debian_package /usr/sbin/iptables iptables "kube-proxy's Services"
  install_debian_package /usr/bin/openssl openssl "the cluster's certificates"
  require_go
  local dir p missing=0; dir="$(kubernetes_dir)"
  for p in "${KUBERNETES_PROGRAMS[@]}" pause; do [[ -x "$dir/$p" ]] || missing=1; done
  if (( missing )); then
    build_kubernetes
    build_pause
  else
    note "kubernetes $KUBERNETES_VERSION: cached at $dir"
  fi
  build_etcd
  build_coredns
  install_chart_tools
}

case "${1:-}" in
  --paths)
    echo "OTELCOL=$(collector_bin)"
    echo "JAEGER=$(jaeger_bin)"
    echo "OTELCOL_SCALE_OUT=$(collector_bin "${SCALE_OUT[@]}")"
    echo "DOCKER_COMPOSE=$(docker_plugin_bin compose)"
    echo "DOCKER_BUILDX=$(docker_plugin_bin buildx)"
    echo "OPENSEARCH_HOME=$(opensearch_home)"
    echo "KAFKA_HOME=$(kafka_home)"
    echo "HELM=$(helm_bin)"
    echo "KUBECONFORM=$(kubeconform_bin)"
    echo "KUBERNETES_DIR=$(kubernetes_dir)"
    echo "ETCD=$(etcd_bin)"
    echo "COREDNS=$(coredns_bin)"
    ;;
  --python) install_python ;;
  --check-go) require_go; note "Go $(go env GOVERSION) can build the collector and Jaeger" ;;
  --test-tools)
    install_debian_package /usr/bin/chromium chromium "renders the analyzer's HTML report in tests"
    install_collector "${SCALE_OUT[@]}"
    install_opensearch
    install_kafka
    install_chart_tools
    install_postgres
    ;;
  --kafka) install_kafka ;;
  --postgres) install_postgres ;;
  --opensearch) install_opensearch ;;
  --chart-tools) install_chart_tools ;;
  --cluster) install_cluster ;;
  --bench-tools) install_debian_package /usr/bin/wrk wrk "drives the benchmark" ;;
  --docker) install_docker ;;
  "") install_python; install_collector; install_jaeger ;;
  *) die "unknown argument '$1' (use --paths, --python, --check-go, --test-tools, --bench-tools, \
--docker, --opensearch, --kafka, --chart-tools, --postgres, --cluster or nothing, after --quiet or not)" ;;
esac
