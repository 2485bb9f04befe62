{{- define "vb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "vb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "ingress") */}}
{{- define "vb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vb.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vb.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "vb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vb.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vb.webhookSecretName" -}}
{{- default (printf "%s-webhook" (include "vb.fullname" .)) .Values.secrets.webhook.existingSecret -}}
{{- end -}}

{{- define "vb.apiKeySecretName" -}}
{{- default (printf "%s-api-keys" (include "vb.fullname" .)) .Values.secrets.apiKeys.existingSecret -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the preStop pause, then the longest the process can take after
SIGTERM (vb.<component>ShutdownSeconds, whole seconds rounded up), then 5 s for what has no
deadline of its own (the spool watermark's fsync, the Kafka clients' teardown, a broker probe's
last metadata request, the exit).
deploy/ci/check-chart.sh recomputes the bound from the rendered configuration.
*/}}
{{- define "vb.gracePeriod" -}}
{{- add .root.Values.preStopSleepSeconds .shutdownSeconds 5 -}}
{{- end -}}

{{/*
The ingress after SIGTERM (crates/ingress/src/startup.rs, run_until_stopped): in-flight
requests (actix's shutdown timeout: the drain timeout in whole seconds, at least 1), the spool's
forwarding and the producer flush all end by the drain deadline; then, with the spool on, up to
2 s for the spool's handles; then up to 1 s for the admin server.
*/}}
{{- define "vb.ingressShutdownSeconds" -}}
{{- $drain := div (add (int64 .Values.ingress.http.drainTimeoutMs) 999) 1000 -}}
{{- add (max $drain 1) (ternary 0 2 (eq .Values.ingress.spool.mode "off")) 1 -}}
{{- end -}}

{{/*
The enricher after SIGTERM (crates/enricher/src/startup.rs, run_until_stopped): the pipeline's
drain (drain timeout), the consumer's close (pipeline.rs, CLOSE_TIMEOUT: 5 s), the producer flush
(the drain timeout again), the admin server (up to 1 s).
*/}}
{{- define "vb.enricherShutdownSeconds" -}}
{{- $drain := div (add (int64 .Values.enricher.consumer.drainTimeoutMs) 999) 1000 -}}
{{- add $drain 5 $drain 1 -}}
{{- end -}}

{{/* The [kafka] table shared by both configuration files. */}}
{{- define "vb.kafkaToml" }}
[kafka]
bootstrap_servers = {{ .Values.kafka.bootstrapServers | quote }}
client_id = {{ .Values.kafka.clientId | quote }}
message_timeout_ms = {{ .Values.kafka.messageTimeoutMs | int64 }}
linger_ms = {{ .Values.kafka.lingerMs | int64 }}
compression = {{ .Values.kafka.compression | quote }}

[kafka.provision]
create_topics = {{ .Values.kafka.provision.createTopics }}
partitions = {{ .Values.kafka.provision.partitions | int64 }}
replication_factor = {{ .Values.kafka.provision.replicationFactor | int64 }}

[kafka.topics]
{{- range $name, $topic := .Values.kafka.topics }}
{{ snakecase $name }} = {{ $topic | quote }}
{{- end }}
{{- with .Values.kafka.properties }}

[kafka.properties]
{{- /* YAML numbers arrive as float64, which toString prints as 1e+07; the schema allows
integers only, printed here with all their digits. */}}
{{- range $name, $value := . }}
{{ $name | quote }} = {{ ternary (int64 $value) $value (kindIs "float64" $value) | toString | quote }}
{{- end }}
{{- end }}

[log]
format = {{ .Values.log.format | quote }}
level = {{ .Values.log.level | quote }}
{{- end -}}

{{/* Environment of both containers: Kafka properties from Secrets. */}}
{{- define "vb.kafkaSecretEnv" -}}
{{- range .Values.kafka.secretProperties }}
- name: {{ printf "VOICEHUB_BRIDGE__KAFKA__PROPERTIES__%s" (.property | upper | replace "." "__") }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end -}}

{{- define "vb.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "vb.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end -}}
