{{/* The name of one component's objects: <release>-<component>. */}}
{{- define "oos.name" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries; selectorLabels is the stable subset a selector uses. */}}
{{- define "oos.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "oos.labels" -}}
{{ include "oos.selectorLabels" . }}
app.kubernetes.io/part-of: otel-order-stack
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Non-root, nothing writable but mounted volumes, no privilege, no capability. */}}
{{- define "oos.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "oos.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The stack's own config file, from files/ (links to the repository's files). */}}
{{- define "oos.configFile" -}}
{{- $content := .root.Files.Get (printf "files/%s" .file) -}}
{{- if not $content -}}
{{- fail (printf "files/%s is empty or missing: package the chart from a checkout, where files/ links to the stack's configs" .file) -}}
{{- end -}}
{{- $content -}}
{{- end -}}

{{/* Where Jaeger's OTLP receiver and query API are. */}}
{{- define "oos.jaegerHost" -}}{{ include "oos.name" (dict "root" . "component" "jaeger") }}{{- end -}}

{{/* Where the gateways send: Jaeger, or the Kafka writers in front of it. */}}
{{- define "oos.gatewayTarget" -}}
{{- if .Values.kafka.enabled -}}
{{ include "oos.name" (dict "root" . "component" "jaeger-kafka-writer") }}:4317
{{- else -}}
{{ include "oos.jaegerHost" . }}:4317
{{- end -}}
{{- end -}}

{{/* KAFKA_BROKERS and KAFKA_TOPIC for the writers and for Jaeger. */}}
{{- define "oos.kafkaEnv" -}}
{{- if not .Values.kafka.brokers }}
{{- fail "kafka.brokers is required when kafka.enabled is true" }}
{{- end }}
{{- if ne .Values.storage "opensearch" }}
{{- fail "kafka.enabled needs storage opensearch (jaeger/scale-out/config-opensearch.yaml reads Kafka)" }}
{{- end }}
- name: KAFKA_BROKERS
  value: {{ printf "[%s]" (join ", " .Values.kafka.brokers) | quote }}
- {name: KAFKA_TOPIC, value: {{ .Values.kafka.topic | quote }}}
{{- end -}}

{{- define "oos.opensearchUrl" -}}
{{- if .Values.opensearch.deploy -}}
http://{{ include "oos.name" (dict "root" . "component" "opensearch") }}:9200
{{- else -}}
{{- required "opensearch.url is required when opensearch.deploy is false" .Values.opensearch.url -}}
{{- end -}}
{{- end -}}

{{/* Which database the services use: "" (per-Pod SQLite), "url", "existingSecret" or
     "postgresql"; more than one set is refused, and so is service.replicas > 1 with SQLite. */}}
{{- define "oos.database" -}}
{{- $chosen := list -}}
{{- if .Values.database.url }}{{ $chosen = append $chosen "url" }}{{ end -}}
{{- if .Values.database.existingSecret }}{{ $chosen = append $chosen "existingSecret" }}{{ end -}}
{{- if .Values.postgresql.enabled }}{{ $chosen = append $chosen "postgresql" }}{{ end -}}
{{- if gt (len $chosen) 1 -}}
{{- fail (printf "set only one of database.url, database.existingSecret and postgresql.enabled (got %s)" (join ", " $chosen)) -}}
{{- end -}}
{{- $db := first $chosen | default "" -}}
{{- if and (not $db) (gt (int .Values.service.replicas) 1) -}}
{{- fail (printf "service.replicas=%v needs a shared database: without one every service Pod keeps its own SQLite files (its own stock, orders and idempotency keys, lost with the Pod). Set postgresql.enabled=true, database.url or database.existingSecret, or keep service.replicas=1" .Values.service.replicas) -}}
{{- end -}}
{{- $db -}}
{{- end -}}

{{/* The Secret and key that hold DATABASE_URL (a database is configured). */}}
{{- define "oos.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{ .Values.database.existingSecret }}
{{- else -}}
{{ include "oos.name" (dict "root" . "component" "database") }}
{{- end -}}
{{- end -}}

{{- define "oos.databaseSecretKey" -}}
{{- ternary .Values.database.existingSecretKey "DATABASE_URL" (ne .Values.database.existingSecret "") -}}
{{- end -}}

{{/* The evaluation PostgreSQL's password: postgresql.password, else the one the release's
     Secret already holds (upgrades keep it), else a new random one. */}}
{{- define "oos.postgresqlPassword" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "oos.name" (dict "root" . "component" "database")) -}}
{{- if .Values.postgresql.password -}}
{{ .Values.postgresql.password }}
{{- else if and $secret $secret.data (hasKey $secret.data "POSTGRES_PASSWORD") -}}
{{ index $secret.data "POSTGRES_PASSWORD" | b64dec }}
{{- else -}}
{{ randAlphaNum 32 }}
{{- end -}}
{{- end -}}
