{{/* The chart's name, as the app.kubernetes.io/name label. */}}
{{- define "keygate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resources' name: the release's, suffixed with the chart's unless it holds it. */}}
{{- define "keygate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "keygate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keygate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keygate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keygate.labels" -}}
helm.sh/chart: {{ include "keygate.chart" . }}
{{ include "keygate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "keygate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keygate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "keygate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the pods read credentials from. */}}
{{- define "keygate.secretName" -}}
{{- default (include "keygate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Refusals that the schema cannot express: a render fails with a sentence saying what to set.
*/}}
{{- define "keygate.validate" -}}
{{- $server := .Values.config.server | default dict }}
{{- if not (hasPrefix "https://" ($server.public_url | default "")) }}
{{- fail "config.server.public_url must be set to the https URL members reach keygate at" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- if not .Values.secrets.databaseUrl }}
{{- fail "secrets.databaseUrl (a postgres:// URL) or secrets.existingSecret is required" }}
{{- end }}
{{- if not (hasPrefix "postgres" .Values.secrets.databaseUrl) }}
{{- fail "secrets.databaseUrl must be a postgres:// or postgresql:// URL (SQLite serves one process, not a Deployment)" }}
{{- end }}
{{- if not .Values.secrets.redisUrl }}
{{- fail "secrets.redisUrl (a redis:// or rediss:// URL) or secrets.existingSecret is required: replicas share sessions and challenges there" }}
{{- end }}
{{- if and .Values.secrets.alertWebhookUrl (not .Values.secrets.alertWebhookSecret) }}
{{- fail "secrets.alertWebhookSecret is required with secrets.alertWebhookUrl" }}
{{- end }}
{{- end }}
{{- if .Values.serviceMonitor.enabled }}
{{- $open := false }}
{{- range ($server.metrics_allow | default list) }}
{{- if not (or (hasPrefix "127." .) (hasPrefix "::1" .)) }}{{ $open = true }}{{ end }}
{{- end }}
{{- if not $open }}
{{- fail "serviceMonitor.enabled needs config.server.metrics_allow to cover Prometheus's pods (e.g. the pod network's CIDR): /metrics answers no one else" }}
{{- end }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int ($server.shutdown_timeout_secs | default 10)) }}
{{- fail "terminationGracePeriodSeconds must be larger than config.server.shutdown_timeout_secs" }}
{{- end }}
{{- end }}

{{/*
keygate.toml from .Values.config. Written here rather than with toToml: Helm reads every
number in values as a float, and toToml would write 3600 as 3600.0, which keygate's integer
keys refuse. Maps inside a section become inline tables, lists of maps arrays of them.
*/}}
{{- define "keygate.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "keygate.toml.value" -}}
{{- $kind := kindOf . }}
{{- if eq $kind "string" }}{{ toJson . }}
{{- else if eq $kind "bool" }}{{ ternary "true" "false" . }}
{{- else if or (eq $kind "float64") (eq $kind "float32") }}
{{- if eq (float64 (int64 .)) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (hasPrefix "int" $kind) (hasPrefix "uint" $kind) }}{{ . }}
{{- else if eq $kind "slice" }}[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "keygate.toml.value" $v }}{{ end }}]
{{- else if eq $kind "map" }}{{ $m := . }}{ {{- $first := true }}{{ range $k := keys $m | sortAlpha }}{{ $v := get $m $k }}{{ if ne (kindOf $v) "invalid" }}{{ if not $first }},{{ end }} {{ include "keygate.toml.key" $k }} = {{ include "keygate.toml.value" $v }}{{ $first = false }}{{ end }}{{ end }} }
{{- else }}{{ fail (printf "config: a %s cannot be written as TOML" $kind) }}
{{- end }}
{{- end }}

{{- define "keygate.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $server := get $config "server" | default dict }}
{{- $_ := set $server "bind" (printf "0.0.0.0:%d" (int .Values.containerPort)) }}
{{- $_ := set $config "server" $server }}
# keygate.toml, rendered by the keygate chart from .Values.config. Credentials come from
# KEYGATE__… environment variables (the Secret), never from this file.
{{- range $key := keys $config | sortAlpha }}
{{- $value := get $config $key }}
{{- if and (ne (kindOf $value) "map") (ne (kindOf $value) "invalid") }}
{{ include "keygate.toml.key" $key }} = {{ include "keygate.toml.value" $value }}
{{- end }}
{{- end }}
{{- range $section := keys $config | sortAlpha }}
{{- $table := get $config $section }}
{{- if eq (kindOf $table) "map" }}
[{{ include "keygate.toml.key" $section }}]
{{- range $key := keys $table | sortAlpha }}
{{- $value := get $table $key }}
{{- if ne (kindOf $value) "invalid" }}
{{ include "keygate.toml.key" $key }} = {{ include "keygate.toml.value" $value }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{ end }}

{{/*
The credentials, as keygate reads them: KEYGATE__… variables from a Secret. Called with
(list $ the-secret's-name).
*/}}
{{- define "keygate.secretEnv" -}}
{{- $ctx := index . 0 }}
{{- $name := index . 1 }}
{{- $s := $ctx.Values.secrets }}
{{- $external := ne $s.existingSecret "" }}
{{- range $entry := list
      (list "KEYGATE__DATABASE__URL" "database-url" true $s.databaseUrl)
      (list "KEYGATE__EPHEMERAL__URL" "redis-url" true $s.redisUrl)
      (list "KEYGATE__ALERTS__SMTP_URL" "smtp-url" false $s.smtpUrl)
      (list "KEYGATE__ALERTS__WEBHOOK_URL" "alert-webhook-url" false $s.alertWebhookUrl)
      (list "KEYGATE__ALERTS__WEBHOOK_SECRET" "alert-webhook-secret" false $s.alertWebhookSecret)
      (list "KEYGATE__AUDIT__SIEM_WEBHOOK_URL" "siem-webhook-url" false $s.siemWebhookUrl)
      (list "KEYGATE__AUDIT__SIEM_WEBHOOK_SECRET" "siem-webhook-secret" false $s.siemWebhookSecret) }}
{{- $required := index $entry 2 }}
{{- if or $external $required (index $entry 3) }}
- name: {{ index $entry 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ index $entry 1 }}
      {{- if and $external (not $required) }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret's data (the chart's own Secret and the migration hook's copy). */}}
{{- define "keygate.secretData" -}}
{{- $s := .Values.secrets }}
database-url: {{ $s.databaseUrl | b64enc | quote }}
redis-url: {{ $s.redisUrl | b64enc | quote }}
{{- with $s.smtpUrl }}
smtp-url: {{ . | b64enc | quote }}
{{- end }}
{{- with $s.alertWebhookUrl }}
alert-webhook-url: {{ . | b64enc | quote }}
{{- end }}
{{- with $s.alertWebhookSecret }}
alert-webhook-secret: {{ . | b64enc | quote }}
{{- end }}
{{- with $s.siemWebhookUrl }}
siem-webhook-url: {{ . | b64enc | quote }}
{{- end }}
{{- with $s.siemWebhookSecret }}
siem-webhook-secret: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
