{{/*
One Deployment of the bridge's image. Arguments (dict):
  root: $, component: ingress|enricher, values: that component's values, shutdownSeconds: the
  longest it takes after SIGTERM, adminPort, httpPort (0: none), autoscaled: whether an HPA owns
  the replica count,
  secret: {volume, name, mountPath}, spool: whether it keeps a spool (then a StatefulSet with a
  PersistentVolumeClaim per replica, mounted where ingress.toml puts spool.dir).
*/}}
{{- define "vb.deployment" -}}
{{- $c := .values -}}
{{- $component := .component -}}
{{- include "vb.checkMemory" (dict "root" .root "component" $component "bound" $.memoryBound) -}}
{{- with .root -}}
apiVersion: apps/v1
kind: {{ if $.spool }}StatefulSet{{ else }}Deployment{{ end }}
metadata:
  name: {{ include "vb.fullname" . }}-{{ $component }}
  labels:
    {{- include "vb.labels" . | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  {{- if not $.autoscaled }}
  replicas: {{ $c.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "vb.selectorLabels" (dict "root" . "component" $component) | nindent 6 }}
  {{- if $.spool }}
  # The headless admin Service (services.yaml): stable pod names, and the scrape target.
  serviceName: {{ include "vb.fullname" . }}-{{ $component }}-admin
  # Pods are interchangeable apart from their volumes: start and stop them all at once.
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy:
    {{- toYaml $c.spool.persistence.retentionPolicy | nindent 4 }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "vb.labels" . | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
      annotations:
        checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
        # The worst case the chart computed from the values (docs/operations.md, "Memory").
        voicehub.io/memory-bound-mib: {{ $.memoryBound | quote }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "vb.serviceAccountName" . }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ include "vb.gracePeriod" (dict "root" . "shutdownSeconds" (int $.shutdownSeconds)) }}
      securityContext:
        {{- include "vb.podSecurityContext" . | nindent 8 }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $component }}
          image: {{ include "vb.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command: ["/usr/local/bin/voicehub-{{ $component }}"]
          args: ["--config", "/etc/voicehub-bridge/{{ $component }}.toml"]
          {{- $env := include "vb.kafkaSecretEnv" . }}
          {{- if or $env $c.extraEnv }}
          env:
            {{- with $env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          ports:
            {{- if $.httpPort }}
            - name: http
              containerPort: {{ $.httpPort }}
              protocol: TCP
            {{- end }}
            - name: admin
              containerPort: {{ $.adminPort }}
              protocol: TCP
          # Until the admin port answers (the ingress validates its whole spool first, sized
          # here at 10 MiB/s of spool.maxBytes), liveness is not checked.
          startupProbe:
            httpGet: {path: /livez, port: admin}
            periodSeconds: 2
            failureThreshold: {{ div (add $.startupSeconds 1) 2 }}
          livenessProbe:
            httpGet: {path: /livez, port: admin}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: admin}
            periodSeconds: 5
            failureThreshold: 2
          lifecycle:
            preStop:
              sleep:
                seconds: {{ .Values.preStopSleepSeconds }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- include "vb.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/voicehub-bridge
              readOnly: true
            - name: {{ $.secret.volume }}
              mountPath: {{ $.secret.mountPath }}
              readOnly: true
            {{- if $.spool }}
            - name: spool
              mountPath: /var/lib/voicehub/spool
            {{- end }}
            {{- with $c.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "vb.fullname" . }}
            items:
              - key: {{ $component }}.toml
                path: {{ $component }}.toml
        # Mounted whole (no subPath) and re-read every 5 s: a rotated Secret needs no restart.
        - name: {{ $.secret.volume }}
          secret:
            secretName: {{ $.secret.name }}
            # 0440: the owner (root) and the pod's fsGroup read it; nobody else.
            defaultMode: 288
        {{- with $c.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.topologySpreadConstraints }}
      {{- $selector := include "vb.selectorLabels" (dict "root" $.root "component" $component) | fromYaml }}
      topologySpreadConstraints:
        {{- range . }}
        {{- $constraint := deepCopy . }}
        {{- if not (hasKey $constraint "labelSelector") }}
        {{- $_ := set $constraint "labelSelector" (dict "matchLabels" $selector) }}
        {{- end }}
        {{- toYaml (list $constraint) | nindent 8 }}
        {{- end }}
      {{- end }}
  {{- if $.spool }}
  {{- with $c.spool.persistence }}
  # A scaled-in replica keeps its claim (and any records left in it) for when it comes back.
  volumeClaimTemplates:
    - metadata:
        name: spool
        labels:
          {{- include "vb.selectorLabels" (dict "root" $.root "component" $component) | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml .accessModes | nindent 10 }}
        {{- if .storageClassName }}
        storageClassName: {{ .storageClassName }}
        {{- end }}
        resources:
          requests:
            storage: {{ .size }}
  {{- end }}
  {{- end }}
{{- end }}
{{- end -}}
