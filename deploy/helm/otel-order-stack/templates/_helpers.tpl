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

{{/* The port of an external database (database.url's, else PostgreSQL's 5432): its egress. */}}
{{- define "oos.databasePort" -}}
{{- $host := "" -}}
{{- if .Values.database.url }}{{ $host = (urlParse .Values.database.url).host }}{{ end -}}
{{- if contains ":" $host }}{{ last (splitList ":" $host) }}{{ else }}5432{{ end -}}
{{- end -}}

{{/* The port of an external OpenSearch (opensearch.url's, else 443 for https, 9200). */}}
{{- define "oos.opensearchPort" -}}
{{- $url := urlParse (include "oos.opensearchUrl" .) -}}
{{- if contains ":" $url.host }}{{ last (splitList ":" $url.host) }}
{{- else if eq $url.scheme "https" }}443{{ else }}9200{{ end -}}
{{- end -}}

{{/* Settings merged over the stack's own Jaeger/collector config (a second --config file):
     Kafka TLS and SASL for the given section (exporters or receivers), and OpenSearch
     authentication and TLS when it is external. "" when there is nothing to add. */}}
{{- define "oos.kafkaSecurity" -}}
{{- $k := .root.Values.kafka -}}
{{- if or $k.tls.enabled $k.sasl.enabled -}}
{{ .section }}:
  kafka:
    {{- if $k.tls.enabled }}
    tls:
      insecure: false
      {{- if $k.tls.existingSecret }}
      ca_file: /etc/kafka-tls/ca.crt
      {{- if $k.tls.clientCertificate }}
      cert_file: /etc/kafka-tls/tls.crt
      key_file: /etc/kafka-tls/tls.key
      {{- end }}
      {{- end }}
      {{- with $k.tls.serverName }}
      server_name_override: {{ . | quote }}
      {{- end }}
    {{- end }}
    {{- if $k.sasl.enabled }}
    auth:
      sasl:
        mechanism: {{ $k.sasl.mechanism }}
        username: ${env:KAFKA_SASL_USERNAME}
        password: ${env:KAFKA_SASL_PASSWORD}
    {{- end }}
{{- end -}}
{{- end -}}

{{- define "oos.opensearchSecurity" -}}
{{- $o := .Values.opensearch -}}
{{- if and (eq .Values.storage "opensearch") (not $o.deploy) (or $o.auth.existingSecret $o.tls.caSecret) -}}
extensions:
  jaeger_storage:
    backends:
      opensearch_store:
        opensearch:
          {{- if $o.auth.existingSecret }}
          auth:
            basic:
              username: ${env:OPENSEARCH_USERNAME}
              password: ${env:OPENSEARCH_PASSWORD}
          {{- end }}
          {{- if $o.tls.caSecret }}
          tls:
            insecure: false
            ca_file: /etc/opensearch-tls/ca.crt
          {{- end }}
{{- end -}}
{{- end -}}

{{/* security.yaml of one component's ConfigMap: "" for the components it does not concern. */}}
{{- define "oos.securityConfig" -}}
{{- $root := .root -}}
{{- if and (eq .component "jaeger-kafka-writer") $root.Values.kafka.enabled -}}
{{ include "oos.kafkaSecurity" (dict "root" $root "section" "exporters") }}
{{- else if eq .component "jaeger" -}}
{{- $parts := list -}}
{{- if $root.Values.kafka.enabled -}}
{{- $parts = append $parts (include "oos.kafkaSecurity" (dict "root" $root "section" "receivers")) -}}
{{- end -}}
{{- $parts = append $parts (include "oos.opensearchSecurity" $root) -}}
{{- without $parts "" | join "\n" -}}
{{- end -}}
{{- end -}}

{{/* The env entries and volumes those settings read (secrets mounted or referenced). */}}
{{- define "oos.kafkaSecurityEnv" -}}
{{- $k := .Values.kafka -}}
{{- if and $k.sasl.enabled (eq $k.sasl.mechanism "PLAIN") (not $k.tls.enabled) }}
{{- fail "kafka.sasl.mechanism PLAIN sends the password in clear: it needs kafka.tls.enabled" }}
{{- end }}
{{- if $k.sasl.enabled }}
{{- if not $k.sasl.existingSecret }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret (a Secret with username and password)" }}
{{- end }}
- name: KAFKA_SASL_USERNAME
  valueFrom: {secretKeyRef: {name: {{ $k.sasl.existingSecret }}, key: username}}
- name: KAFKA_SASL_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $k.sasl.existingSecret }}, key: password}}
{{- end }}
{{- end -}}

{{- define "oos.opensearchSecurityEnv" -}}
{{- $o := .Values.opensearch -}}
{{- if and (not $o.deploy) $o.auth.existingSecret }}
- name: OPENSEARCH_USERNAME
  valueFrom: {secretKeyRef: {name: {{ $o.auth.existingSecret }}, key: username}}
- name: OPENSEARCH_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $o.auth.existingSecret }}, key: password}}
{{- end }}
{{- end -}}

{{/* volumeMounts / volumes for the CA and client certificates of Kafka and OpenSearch. */}}
{{- define "oos.tlsMounts" -}}
{{- if and .kafka .root.Values.kafka.tls.enabled .root.Values.kafka.tls.existingSecret }}
- {name: kafka-tls, mountPath: /etc/kafka-tls, readOnly: true}
{{- end }}
{{- if and .opensearch (not .root.Values.opensearch.deploy) .root.Values.opensearch.tls.caSecret }}
- {name: opensearch-tls, mountPath: /etc/opensearch-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "oos.tlsVolumes" -}}
{{- if and .kafka .root.Values.kafka.tls.enabled .root.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret: {secretName: {{ .root.Values.kafka.tls.existingSecret }}}
{{- end }}
{{- if and .opensearch (not .root.Values.opensearch.deploy) .root.Values.opensearch.tls.caSecret }}
- name: opensearch-tls
  secret: {secretName: {{ .root.Values.opensearch.tls.caSecret }}}
{{- end }}
{{- end -}}

{{/* A StatefulSet's claims: kept or deleted with the release (volumes.deleteWithRelease). */}}
{{- define "oos.claimRetention" -}}
persistentVolumeClaimRetentionPolicy:
  whenDeleted: {{ ternary "Delete" "Retain" .Values.volumes.deleteWithRelease }}
  whenScaled: Retain
{{- end -}}
