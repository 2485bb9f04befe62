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

{{/* repository@digest when a digest is set (the exact image), else repository:tag. */}}
{{- define "vb.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* An admin server's listen address on port (list $ port): admin.bindAddress, IPv6 bracketed. */}}
{{- define "vb.adminListen" -}}
{{- $address := (index . 0).Values.admin.bindAddress -}}
{{- if contains ":" $address }}[{{ $address }}]{{ else }}{{ $address }}{{ end }}:{{ index . 1 }}
{{- end -}}

{{/* The port of `host:port` or `[v6]:port`; empty without one. */}}
{{- define "vb.portOf" -}}
{{- regexReplaceAll "^(\\[[^\\]]*\\]|[^:\\[]*)(:([0-9]+))?$" . "${3}" -}}
{{- end -}}

{{/* The Kafka brokers' ports: networkPolicy.egress.kafka.ports, else those of kafka.bootstrapServers
([proto://]host[:port]; 9092 for a server without one), as a JSON list. */}}
{{- define "vb.kafkaPorts" -}}
{{- $ports := list -}}
{{- range .Values.networkPolicy.egress.kafka.ports -}}
{{- $ports = append $ports (int .) -}}
{{- end -}}
{{- if not $ports -}}
{{- range splitList "," .Values.kafka.bootstrapServers -}}
{{- $server := regexReplaceAll "^[A-Za-z_]+://" (trim .) "" -}}
{{- if not (regexMatch "^(\\[[^\\]]*\\]|[^:\\[/]+)(:[0-9]+)?$" $server) -}}
{{- fail (printf "kafka.bootstrapServers: no port can be read from %q for the NetworkPolicy; set networkPolicy.egress.kafka.ports" .) -}}
{{- end -}}
{{- $port := include "vb.portOf" $server -}}
{{- $ports = append $ports (int (default "9092" $port)) -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $ports) -}}
{{- end -}}

{{/* The analysis API's ports: those of sources.*.allowedHosts (443 for an entry without one, and
80 with allowHttp), as a JSON list. */}}
{{- define "vb.analysisApiPorts" -}}
{{- $ports := list -}}
{{- range $name, $source := .Values.sources -}}
{{- range $source.allowedHosts -}}
{{- $entry := . -}}
{{- if not (kindIs "string" .) }}{{ $entry = .host }}{{ end -}}
{{- $authority := first (splitList "/" $entry) -}}
{{- $port := include "vb.portOf" $authority -}}
{{- if $port -}}
{{- $ports = append $ports (int $port) -}}
{{- else -}}
{{- $ports = append $ports 443 -}}
{{- if $source.allowHttp }}{{ $ports = append $ports 80 }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $ports) -}}
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

{{/*
A memory quantity (256Mi, 1Gi, 300M, 268435456) in MiB, rounded down. Fails on a form it
does not read, rather than guess.
*/}}
{{- define "vb.mebibytes" -}}
{{- $q := ternary (int64 .) . (kindIs "float64" .) | toString -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "k" 1000 "M" 1000000 "G" 1000000000 -}}
{{- if not (regexMatch "^[0-9]+(Ki|Mi|Gi|k|M|G)?$" $q) -}}
{{- fail (printf "memory limit %q: write it as a whole number of bytes, or with Ki, Mi, Gi, k, M or G" $q) -}}
{{- end -}}
{{- $number := regexReplaceAll "[^0-9]" $q "" | int64 -}}
{{- $unit := regexReplaceAll "^[0-9]+" $q "" -}}
{{- div (mul $number (get $units $unit | default 1 | int64)) 1048576 -}}
{{- end }}

{{/*
Each service's worst-case memory in MiB, computed from the values as docs/operations.md
("Memory") derives it; keep the two in step.
*/}}
{{- define "vb.ingressMemoryBound" -}}
{{- $http := .Values.ingress.http -}}
{{- $queueKiB := index .Values.kafka.properties "queue.buffering.max.kbytes" | default 32768 | int64 -}}
{{- $perWorker := div (add $http.maxConnections $http.workers -1) $http.workers -}}
{{- $bytes := add
    (mul 40 1048576)
    (mul .Values.ingress.dedupe.maxEntries 100)
    (mul $http.workers $perWorker 172032)
    (mul 3 $http.maxInFlightBodyBytes)
    (mul $queueKiB 1024)
    (ternary .Values.ingress.spool.forwardWindowBytes 0 (ne .Values.ingress.spool.mode "off")) -}}
{{- div (add $bytes 1048575) 1048576 -}}
{{- end }}

{{- define "vb.enricherMemoryBound" -}}
{{- $e := .Values.enricher -}}
{{- $bytes := add
    (mul 40 1048576)
    (mul 5 $e.fetch.maxInFlightBodyBytes)
    (mul $e.consumer.maxInFlight .Values.ingress.http.maxBodyBytes)
    (div (mul 3 $e.consumer.maxBacklogBytes) 2) -}}
{{- div (add $bytes 1048575) 1048576 -}}
{{- end }}

{{/*
Fails the render when a component's memory limit is below its worst case.
*/}}
{{- define "vb.checkMemory" -}}
{{- $c := index .root.Values .component -}}
{{- $limit := dig "limits" "memory" "" $c.resources -}}
{{- if not $limit -}}
{{- fail (printf "%s.resources.limits.memory is required: the chart computes %s MiB as the %s's worst case" .component .bound .component) -}}
{{- end -}}
{{- $mib := include "vb.mebibytes" $limit | int64 -}}
{{- if lt $mib (.bound | int64) -}}
{{- fail (printf "%s.resources.limits.memory %s (%d MiB) is below the %s's worst case of %s MiB computed from its values (docs/operations.md, \"Memory\"): raise the limit or lower the bounds" .component $limit $mib .component .bound) -}}
{{- end -}}
{{- end }}
