{{/*
One Deployment of the bridge's image. Arguments (dict):
  root: $, component: ingress|enricher, values: that component's values, drainMs: its drain
  deadline, adminPort, httpPort (0: none), autoscaled: whether an HPA owns the replica count,
  secret: {volume, name, mountPath}.
*/}}
{{- define "vb.deployment" -}}
{{- $c := .values -}}
{{- $component := .component -}}
{{- with .root -}}
apiVersion: apps/v1
kind: Deployment
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
  template:
    metadata:
      labels:
        {{- include "vb.labels" . | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
      annotations:
        checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "vb.serviceAccountName" . }}
      automountServiceAccountToken: false
      # preStop pause + drain deadline + producer close.
      terminationGracePeriodSeconds: {{ include "vb.gracePeriod" (dict "root" . "drainMs" $.drainMs) }}
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
          {{- with (include "vb.kafkaSecretEnv" .) }}
          env:
            {{- . | nindent 12 }}
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
{{- end }}
{{- end -}}
