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

{{/* Termination grace: preStop pause + the drain deadline + 10 s for the producer to close. */}}
{{- define "vb.gracePeriod" -}}
{{- add .root.Values.preStopSleepSeconds (div .drainMs 1000) 10 -}}
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
{{- range $name, $value := . }}
{{ $name | quote }} = {{ $value | toString | quote }}
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
