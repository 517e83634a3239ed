#!/usr/bin/env bash
# Build local stand-ins for the third-party images that docker-compose.yml and the Dockerfile
# name, under exactly their tags, for a Docker engine that cannot reach an image registry. What
# a stand-in proves and what it cannot: README.md beside this file.
#
#   docker/stand-ins/build.sh            # build the stand-ins whose tag the engine lacks
#   docker/stand-ins/build.sh --force    # rebuild every stand-in (never replaces a real image)
#   docker/stand-ins/build.sh --tags     # print the six tags (builds nothing)
#   docker/stand-ins/build.sh --chart    # also the Helm chart's own tags (its collector
#                                        # release and OpenSearch), for the cluster tier
#
# A tag the engine already has as a real image (pulled) is left alone. Every stand-in carries
# the label org.otel-order-stack.stand-in=<source>, so `docker image ls --filter
# label=org.otel-order-stack.stand-in` lists them and `docker image rm` of those brings the
# real images back on the next pull.
#
# Needs a running Docker engine, debootstrap and apt-get (scripts/install_backends.sh --docker)
# and the project's collector and Jaeger builds (scripts/install_backends.sh).
# Environment: STAND_IN_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/docker/stand-ins"
MIRROR="${STAND_IN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LABEL=org.otel-order-stack.stand-in
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

say() { printf '\033[1m[stand-ins]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[stand-ins] error:\033[0m %s\n' "$*" >&2; exit 1; }

# The tags, read from the files that name them (written there once).
one() { [[ -n "$1" ]] || die "$2"; echo "$1"; }
PYTHON_TAG="$(one "$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/Dockerfile")" "Dockerfile: no ARG PYTHON_IMAGE")"
BUSYBOX_TAG="$(one "$(grep -o 'FROM busybox:[^ ]*' "$ROOT/docker-compose.yml" | cut -c6-)" "docker-compose.yml: no busybox stage")"
COLLECTOR_TAG="$(one "$(grep -o 'FROM otel/opentelemetry-collector-contrib:[^ ]*' "$ROOT/docker-compose.yml" | cut -c6-)" "docker-compose.yml: no collector base")"
JAEGER_TAG="$(one "$(sed -n 's/^ *image: \(jaegertracing\/jaeger:.*\)$/\1/p' "$ROOT/docker-compose.yml")" "docker-compose.yml: no Jaeger image")"
PROMETHEUS_TAG="$(one "$(sed -n 's/^ *image: \(prom\/prometheus:.*\)$/\1/p' "$ROOT/docker-compose.yml")" "docker-compose.yml: no Prometheus image")"
POSTGRES_TAG="$(one "$(sed -n 's/^ *image: \(postgres:.*\)$/\1/p' "$ROOT/docker-compose.yml")" "docker-compose.yml: no PostgreSQL image")"
# The chart's images beyond compose's (deploy/helm/otel-order-stack/values.yaml, images:).
VALUES="$ROOT/deploy/helm/otel-order-stack/values.yaml"
chart_tag() { one "$(sed -n "s/^  $1: \([^ #]*\).*$/\1/p" "$VALUES")" "values.yaml: no images.$1"; }

if [[ "${1:-}" == --tags ]]; then
  printf '%s\n' "$PYTHON_TAG" "$BUSYBOX_TAG" "$COLLECTOR_TAG" "$JAEGER_TAG" "$PROMETHEUS_TAG" \
    "$POSTGRES_TAG"
  exit 0
fi
FORCE=false CHART=false
case "${1:-}" in
  --force) FORCE=true ;;
  --chart) CHART=true ;;
  "") ;;
  *) die "unknown argument '$1' (use --force, --chart or --tags)" ;;
esac

docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd; the compose tests start it themselves)"

# needed <tag> <source>: true when the stand-in should be built now: the tag is absent, or it
# is a stand-in built from another source (a rebuilt collector or Jaeger), or --force.
needed() {
  local label
  label="$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null)" \
    || return 0                                   # absent
  [[ "$label" == "<no value>" || -z "$label" ]] && { say "$1: a real image is present, kept"; return 1; }
  $FORCE && return 0
  [[ "$label" == "$2" ]] || { say "$1: stand-in from $label, now $2"; return 0; }
  say "$1: stand-in present ($label)"
  return 1
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# debian_binary <package> <path in the package> <dest>: a file out of a Debian package, taken
# with apt-get download and dpkg-deb (nothing is installed on the host, no service started).
debian_binary() {
  local dir="$WORK/deb-$1"
  mkdir -p "$dir"
  (cd "$dir" && apt-get download -q "$1" >"$dir.log" 2>&1) \
    || { cat "$dir.log" >&2; die "apt-get download $1 failed (run apt-get update?)"; }
  dpkg-deb -x "$dir"/*.deb "$dir/x"
  install -m 0755 "$dir/x$2" "$3"
}

# build <tag> <recipe dir> <source> [--build-arg ...]: docker build of a recipe with a context
# prepared in $WORK/ctx-<recipe>.
build() {
  local tag="$1" recipe="$2" source="$3"; shift 3
  local ctx="$WORK/ctx-$recipe"
  mkdir -p "$ctx"
  cp "$HERE/$recipe/Dockerfile" "$ctx/"
  cp "$HOST_CA_BUNDLE" "$ctx/ca-certificates.crt"
  say "$tag: building the stand-in from $source"
  DOCKER_BUILDKIT=1 docker build -q --label "$LABEL=$source" -t "$tag" "$@" "$ctx" >/dev/null \
    || die "$tag: docker build of docker/stand-ins/$recipe failed"
}

# --- the Python base: a debootstrapped bookworm with Debian's python3.11 and pip -------------
PYTHON_SOURCE=debootstrap-bookworm-python3.11
if needed "$PYTHON_TAG" "$PYTHON_SOURCE"; then
  command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/install_backends.sh --docker)"
  rootfs="$WORK/rootfs"
  say "$PYTHON_TAG: debootstrap bookworm (minbase + python3.11, pip; 2-4 min cold)"
  start=$SECONDS
  debootstrap --variant=minbase --include=python3.11,python3-pip,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  say "  debootstrap done in $((SECONDS - start)) s"
  # Shaped like the official image: python and pip on PATH in /usr/local/bin, pip installs as
  # root (no PEP 668 marker), LANG=C.UTF-8. Containers here reach the package registries only
  # through a host that re-signs TLS, so the base trusts the host's CA bundle (uv included).
  cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
  tar -C "$rootfs" -c . | docker import \
    --change "LABEL $LABEL=$PYTHON_SOURCE" \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    --change 'CMD ["python3"]' \
    - "$PYTHON_TAG" >/dev/null || die "$PYTHON_TAG: docker import failed"
  rm -rf "$rootfs"
  say "$PYTHON_TAG: stand-in imported"
fi

# --- busybox: Debian's busybox-static ------------------------------------------------------
if needed "$BUSYBOX_TAG" debian-busybox-static; then
  mkdir -p "$WORK/ctx-busybox"
  debian_binary busybox-static /bin/busybox "$WORK/ctx-busybox/busybox"
  build "$BUSYBOX_TAG" busybox "debian-busybox-static"
fi

# --- the collector and Jaeger: the project's own builds of the same releases -----------------
eval "$("$ROOT/scripts/install_backends.sh" --paths)"
for bin in "$OTELCOL" "$JAEGER"; do
  [[ -x "$bin" ]] || die "$bin is missing: run scripts/install_backends.sh (builds the collector and Jaeger)"
done
if needed "$COLLECTOR_TAG" "$(basename "$OTELCOL")"; then
  mkdir -p "$WORK/ctx-otel-collector"
  cp "$OTELCOL" "$WORK/ctx-otel-collector/otelcol"
  build "$COLLECTOR_TAG" otel-collector "$(basename "$OTELCOL")"
fi
if needed "$JAEGER_TAG" "$(basename "$JAEGER")"; then
  mkdir -p "$WORK/ctx-jaeger"
  cp "$JAEGER" "$WORK/ctx-jaeger/jaeger"
  build "$JAEGER_TAG" jaeger "$(basename "$JAEGER")" \
    --build-arg "BASE_IMAGE=$PYTHON_TAG" --build-arg "BUSYBOX_IMAGE=$BUSYBOX_TAG"
fi

# --- Prometheus: Debian's package ------------------------------------------------------------
if needed "$PROMETHEUS_TAG" debian-prometheus; then
  mkdir -p "$WORK/ctx-prometheus"
  debian_binary prometheus /usr/bin/prometheus "$WORK/ctx-prometheus/prometheus"
  build "$PROMETHEUS_TAG" prometheus "debian-prometheus" \
    --build-arg "BASE_IMAGE=$PYTHON_TAG" --build-arg "BUSYBOX_IMAGE=$BUSYBOX_TAG"
fi
# --- PostgreSQL: Debian's postgresql-15 package on the bookworm base -------------------------
# apt-get runs in the build, from the base's own bookworm sources (the package registry).
if needed "$POSTGRES_TAG" debian-postgresql-15; then
  mkdir -p "$WORK/ctx-postgres"
  install -m 0755 "$HERE/postgres/docker-entrypoint.sh" "$WORK/ctx-postgres/docker-entrypoint.sh"
  build "$POSTGRES_TAG" postgres "debian-postgresql-15" --build-arg "BASE_IMAGE=$PYTHON_TAG"
fi

# --- the chart's own tags: its collector release and OpenSearch ------------------------------
if $CHART; then
  CHART_COLLECTOR_TAG="$(chart_tag collector)"
  CHART_JAEGER_TAG="$(chart_tag jaeger)"
  CHART_POSTGRES_TAG="$(chart_tag postgresql)"
  OPENSEARCH_TAG="$(chart_tag opensearch)"
  [[ "$CHART_JAEGER_TAG" == "$JAEGER_TAG" && "$CHART_POSTGRES_TAG" == "$POSTGRES_TAG" ]] \
    || die "values.yaml's Jaeger/PostgreSQL images differ from docker-compose.yml's"
  # The scale-out collector build: the chart's agents and gateways need its loadbalancing
  # exporter and tail_sampling processor, at the release the chart names.
  [[ -x "$OTELCOL_SCALE_OUT" ]] || die "$OTELCOL_SCALE_OUT is missing: run scripts/install_backends.sh --test-tools"
  if needed "$CHART_COLLECTOR_TAG" "$(basename "$OTELCOL_SCALE_OUT")"; then
    mkdir -p "$WORK/ctx-otel-collector-chart"
    cp "$HERE/otel-collector/Dockerfile" "$WORK/ctx-otel-collector-chart/"
    cp "$HOST_CA_BUNDLE" "$WORK/ctx-otel-collector-chart/ca-certificates.crt"
    cp "$OTELCOL_SCALE_OUT" "$WORK/ctx-otel-collector-chart/otelcol"
    say "$CHART_COLLECTOR_TAG: building the stand-in from $(basename "$OTELCOL_SCALE_OUT")"
    DOCKER_BUILDKIT=1 docker build -q --label "$LABEL=$(basename "$OTELCOL_SCALE_OUT")" \
      -t "$CHART_COLLECTOR_TAG" "$WORK/ctx-otel-collector-chart" >/dev/null \
      || die "$CHART_COLLECTOR_TAG: docker build failed"
  fi
  # OpenSearch: the distribution the installer fetched from Maven Central, on Debian's JRE.
  [[ -x "$OPENSEARCH_HOME/bin/opensearch" ]] || die "$OPENSEARCH_HOME is missing: run scripts/install_backends.sh --opensearch"
  # named after the recipe too, so a changed recipe builds anew
  OPENSEARCH_SOURCE="maven-$(basename "$OPENSEARCH_HOME")-debian-openjdk-17-$(cat "$HERE"/opensearch/* | sha256sum | cut -c1-8)"
  if needed "$OPENSEARCH_TAG" "$OPENSEARCH_SOURCE"; then
    mkdir -p "$WORK/ctx-opensearch"
    cp -r "$OPENSEARCH_HOME" "$WORK/ctx-opensearch/opensearch"
    rm -rf "$WORK/ctx-opensearch/opensearch/data" "$WORK/ctx-opensearch/opensearch/logs"/*
    mkdir -p "$WORK/ctx-opensearch/opensearch/data" "$WORK/ctx-opensearch/opensearch/logs"
    install -m 0755 "$HERE/opensearch/opensearch-docker-entrypoint.sh" "$WORK/ctx-opensearch/"
    build "$OPENSEARCH_TAG" opensearch "$OPENSEARCH_SOURCE" --build-arg "BASE_IMAGE=$PYTHON_TAG"
  fi
fi
say "stand-ins ready"
