#!/bin/bash
# The official image's interface, for what the chart and compose use: an environment variable
# whose name holds a dot (discovery.type=single-node) becomes an -E setting, and
# OPENSEARCH_JAVA_OPTS reaches the JVM (bin/opensearch reads it). DISABLE_SECURITY_PLUGIN and
# DISABLE_INSTALL_DEMO_CONFIG concern the security plugin, which this distribution lacks.
set -euo pipefail
if [[ "${1:-opensearch}" != opensearch ]]; then exec "$@"; fi
shift || true
settings=()
while IFS='=' read -r -d '' name value; do
  if [[ "$name" =~ ^[a-z0-9_]+\.[a-z0-9_.]+$ ]]; then settings+=("-E$name=$value"); fi
done < <(env -0)
if [[ "${DISABLE_SECURITY_PLUGIN:-false}" == true && -d plugins/opensearch-security ]]; then
  settings+=("-Eplugins.security.disabled=true")
fi
exec bin/opensearch "${settings[@]}" "$@"
