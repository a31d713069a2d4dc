{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "bulwark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: "<release>-<chart>" unless the release name already
contains the chart name, overridable with fullnameOverride. Truncated to 47
characters so that "<fullname>-<service>-migrate" stays within the 63 of a
DNS label.
*/}}
{{- define "bulwark.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "bulwark.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels shared by every resource of the release.
*/}}
{{- define "bulwark.labels" -}}
helm.sh/chart: {{ include "bulwark.chart" . }}
app.kubernetes.io/name: {{ include "bulwark.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bulwark
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Name of one service's resources: "<fullname>-<service>".
Call with (dict "root" $ "name" "tenancy").
*/}}
{{- define "bulwark.serviceFullname" -}}
{{- printf "%s-%s" (include "bulwark.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one service: stable for the life of the release, so they
never include the version. Call with (dict "root" $ "name" "tenancy").
*/}}
{{- define "bulwark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bulwark.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
Full labels of one service's resources. Call with (dict "root" $ "name" "tenancy").
*/}}
{{- define "bulwark.serviceLabels" -}}
{{ include "bulwark.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
The effective settings of one service: `defaults` deep-merged with
services.<name>. The service wins, except that a zero value (0, "", false,
{}) inherits the default; the `enabled` flags of autoscaling and
podDisruptionBudget are resolved exactly, so a service can switch either off.
Call with (dict "root" $ "svc" $svc); use with fromYaml.
*/}}
{{- define "bulwark.serviceConfig" -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.defaults) (deepCopy .svc) }}
{{- range $block := list "autoscaling" "podDisruptionBudget" }}
{{- $own := get $.svc $block }}
{{- if and (kindIs "map" $own) (hasKey $own "enabled") }}
{{- $_ := set (get $merged $block) "enabled" (get $own "enabled") }}
{{- end }}
{{- end }}
{{- toYaml $merged }}
{{- end }}

{{/*
The image reference: repository, then digest or tag (default appVersion).
*/}}
{{- define "bulwark.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Name of the ServiceAccount of the service pods.
*/}}
{{- define "bulwark.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bulwark.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret every service reads: existingSecret, or the one the chart
creates.
*/}}
{{- define "bulwark.secretName" -}}
{{- if .Values.secrets.developmentMode }}{{ include "bulwark.fullname" . }}{{ else }}{{ .Values.secrets.existingSecret }}{{ end }}
{{- end }}

{{/*
Key of one service's Postgres password in the Secret.
Call with (dict "name" "tenancy" "cfg" $cfg).
*/}}
{{- define "bulwark.dbPasswordKey" -}}
{{- default (printf "%s-db-password" .name) .cfg.database.passwordKey }}
{{- end }}

{{/*
"?sslmode=..." suffix of the Postgres URLs, or nothing.
*/}}
{{- define "bulwark.pgQuery" -}}
{{- with .Values.postgres.sslmode }}?sslmode={{ . }}{{ end }}
{{- end }}

{{/*
Environment shared by a service's pods and its migration Job: bind address,
port, database login, NATS, shared secrets, logging and telemetry. The
password is a variable of its own so that DATABASE_URL can reference it with
Kubernetes' $(VAR) expansion and never appears in the pod spec.
Call with (dict "root" $ "name" "tenancy" "cfg" $cfg).
*/}}
{{- define "bulwark.env" -}}
{{- $root := .root }}
{{- $secret := include "bulwark.secretName" $root }}
- name: NODE_ENV
  value: {{ $root.Values.config.nodeEnv | quote }}
- name: HOST
  value: {{ $root.Values.config.host | quote }}
- name: PORT
  value: {{ .cfg.port | quote }}
- name: LOG_LEVEL
  value: {{ $root.Values.config.logLevel | quote }}
- name: TRUSTED_PROXIES
  value: {{ $root.Values.config.trustedProxies | default "" | quote }}
- name: CALL_TIMEOUT_MS
  value: {{ $root.Values.config.callTimeoutMs | default 30000 | quote }}
- name: STREAM_TIMEOUT_MS
  value: {{ $root.Values.config.streamTimeoutMs | default 3600000 | int | quote }}
- name: PUBLIC_RATE_LIMIT_PER_MINUTE
  value: {{ $root.Values.config.publicRateLimitPerMinute | default 0 | quote }}
{{- if .cfg.database.urlKey }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .cfg.database.urlKey }}
{{- else }}
- name: BULWARK_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "bulwark.dbPasswordKey" . }}
- name: DATABASE_URL
  value: {{ printf "postgres://%s:$(BULWARK_DATABASE_PASSWORD)@%s:%v/%s%s" .cfg.database.user $root.Values.postgres.host $root.Values.postgres.port $root.Values.postgres.database (include "bulwark.pgQuery" $root) | quote }}
{{- end }}
{{- if $root.Values.nats.urlFromSecret.name }}
- name: NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.nats.urlFromSecret.name }}
      key: {{ $root.Values.nats.urlFromSecret.key }}
{{- else }}
- name: NATS_URL
  value: {{ $root.Values.nats.url | quote }}
{{- end }}
- name: NATS_REPLICAS
  value: {{ $root.Values.nats.replicas | quote }}
- name: EVENTS_MAX_AGE_DAYS
  value: {{ $root.Values.nats.streamMaxAgeDays | quote }}
- name: BULWARK_BOOTSTRAP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.bootstrapToken }}
- name: BULWARK_SERVICE_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.serviceSecret }}
{{- if eq .name "keys" }}
- name: BULWARK_MASTER_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.masterKeys }}
- name: KEYS_API_KEY_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.apiKeyPepper }}
{{- end }}
{{- /* This service's own signing key, and every service's public key. */}}
- name: BULWARK_SERVICE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ printf "%s%s" $root.Values.secrets.keys.serviceKeyPrefix .name }}
{{- with $root.Values.meshKeys.publicKeys }}
- name: BULWARK_SERVICE_PUBLIC_KEYS
  value: {{ . | quote }}
{{- end }}
{{- if $root.Values.nats.auth.enabled }}
- name: NATS_USER
  value: {{ .name | quote }}
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ printf "%s%s" $root.Values.secrets.keys.natsPasswordPrefix .name }}
{{- end }}
{{- /* Where every other service of the release answers (in-cluster h2c). */}}
{{- range $svcName, $svc := $root.Values.services }}
- name: {{ printf "%s_URL" (upper $svcName) }}
  value: {{ printf "http://%s:%v" (include "bulwark.serviceFullname" (dict "root" $root "name" $svcName)) $svc.port | quote }}
{{- end }}
- name: PUBLIC_BASE_URL
  value: {{ $root.Values.config.publicBaseUrl | quote }}
{{- with $root.Values.config.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "bulwark-%s" $.name | quote }}
{{- end }}
{{- with $root.Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .cfg.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod scheduling block shared by Deployments: nodeSelector, tolerations,
affinity (or the anti-affinity preset), topology spread, priority class.
Call with (dict "root" $ "name" "tenancy" "cfg" $cfg).
*/}}
{{- define "bulwark.scheduling" -}}
{{- with .cfg.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .cfg.affinity }}
affinity:
  {{- toYaml .cfg.affinity | nindent 2 }}
{{- else if eq (toString .cfg.podAntiAffinityPreset) "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "bulwark.selectorLabels" . | nindent 14 }}
{{- else if eq (toString .cfg.podAntiAffinityPreset) "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "bulwark.selectorLabels" . | nindent 12 }}
{{- end }}
{{- with .cfg.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range . }}
  - {{ toYaml (omit . "labelSelector") | indent 4 | trim }}
    labelSelector:
      {{- if .labelSelector }}
      {{- toYaml .labelSelector | nindent 6 }}
      {{- else }}
      matchLabels:
        {{- include "bulwark.selectorLabels" $ | nindent 8 }}
      {{- end }}
{{- end }}
{{- end }}
{{- with .cfg.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/*
Checks the values that a schema cannot: fails rendering with a message that
names the value.
*/}}
{{- define "bulwark.validate" -}}
{{- if not .Values.secrets.developmentMode }}
{{- if not .Values.secrets.existingSecret }}
{{- fail "secrets.existingSecret must name the Secret holding Bulwark's credentials (see deploy/README.md), or set secrets.developmentMode=true on a throwaway cluster" }}
{{- end }}
{{- $plain := list }}
{{- range $k := list "bootstrapToken" "serviceSecret" "masterKeys" "apiKeyPepper" }}
{{- if get $.Values.secrets $k }}{{ $plain = append $plain (printf "secrets.%s" $k) }}{{ end }}
{{- end }}
{{- range $svcName, $v := .Values.secrets.serviceKeys }}{{ if $v }}{{ $plain = append $plain (printf "secrets.serviceKeys.%s" $svcName) }}{{ end }}{{ end }}
{{- range $svcName, $v := .Values.secrets.natsPasswords }}{{ if $v }}{{ $plain = append $plain (printf "secrets.natsPasswords.%s" $svcName) }}{{ end }}{{ end }}
{{- if .Values.postgres.admin.password }}{{ $plain = append $plain "postgres.admin.password" }}{{ end }}
{{- range $svcName, $svc := .Values.services }}{{ if and $svc.database $svc.database.password }}{{ $plain = append $plain (printf "services.%s.database.password" $svcName) }}{{ end }}{{ end }}
{{- if $plain }}
{{- fail (printf "%s: a secret value in the values would be written into the manifests; put it into the Secret %s (secrets.existingSecret), or set secrets.developmentMode=true on a throwaway cluster" (join ", " $plain) .Values.secrets.existingSecret) }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.developmentMode .Values.secrets.serviceSecret (lt (len .Values.secrets.serviceSecret) 32) }}
{{- fail "secrets.serviceSecret must be at least 32 characters (or empty to generate one)" }}
{{- end }}
{{- $ports := dict }}
{{- range $name, $svc := .Values.services }}
{{- if not (regexMatch "^[a-z][a-z0-9-]{0,20}$" $name) }}
{{- fail (printf "services.%s: a service key must be a lowercase DNS label of at most 21 characters" $name) }}
{{- end }}
{{- if $svc.enabled }}
{{- $p := toString $svc.port }}
{{- if hasKey $ports $p }}
{{- fail (printf "services.%s.port %s is also the port of services.%s" $name $p (get $ports $p)) }}
{{- end }}
{{- $_ := set $ports $p $name }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The port Prometheus scrapes a service's pods on: metrics.port when set
(METRICS_PORT), else the service's own port. Call with the service context.
*/}}
{{- define "bulwark.metricsPort" -}}
{{- if gt (int .root.Values.metrics.port) 0 }}{{ int .root.Values.metrics.port }}{{ else }}{{ int .cfg.port }}{{ end }}
{{- end }}

{{/*
The name of that port in the pod and the Service: "metrics" or "grpc".
*/}}
{{- define "bulwark.metricsPortName" -}}
{{- if gt (int .root.Values.metrics.port) 0 }}metrics{{ else }}grpc{{ end }}
{{- end }}
