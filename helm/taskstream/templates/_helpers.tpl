{{/*
Chart name, truncated to 63 characters (the limit of a label value and a DNS label).
*/}}
{{- define "taskstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: <release>-<chart>, or <release> when it already contains the
chart name.
*/}}
{{- define "taskstream.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "taskstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image tag: image.tag, or the chart's appVersion.
*/}}
{{- define "taskstream.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString }}
{{- end }}

{{/*
The image reference: <repository>:<tag>.
*/}}
{{- define "taskstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "taskstream.imageTag" .) }}
{{- end }}

{{/*
Labels that select the release's pods (never change them: Deployment selectors are immutable).
*/}}
{{- define "taskstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels of every object.
*/}}
{{- define "taskstream.labels" -}}
helm.sh/chart: {{ include "taskstream.chart" . }}
{{ include "taskstream.selectorLabels" . }}
app.kubernetes.io/version: {{ include "taskstream.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskstream
{{- end }}

{{/*
The component templates below take a dict:
  root       the top-level context ($)
  component  command-service, query-service, projection-service, scheduler or topics
  values     the component's block of values (e.g. .Values.commandService)
  database   true when the component uses Postgres
  auth       true when the component verifies JWTs
  hpa        true when a HorizontalPodAutoscaler manages the replicas
  partitionBound  true when the replicas split the log's partitions (at most kafka.partitions)
  statefulSet     true for a StatefulSet (stable pod names and addresses, through the headless
                  Service of taskstream.headlessService) instead of a Deployment
*/}}

{{/*
Name of a component's objects: <fullname>-<component>.
*/}}
{{- define "taskstream.componentName" -}}
{{- printf "%s-%s" (include "taskstream.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of a StatefulSet's headless Service, which gives each pod the address
<pod>.<name>.<namespace>.svc.
*/}}
{{- define "taskstream.headlessServiceName" -}}
{{- printf "%s-headless" (include "taskstream.componentName" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "taskstream.componentSelectorLabels" -}}
{{ include "taskstream.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "taskstream.componentLabels" -}}
{{ include "taskstream.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The ServiceAccount the services run as.
*/}}
{{- define "taskstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "taskstream.configMapName" -}}
{{- printf "%s-config" (include "taskstream.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Secret the chart creates for the values without an existingSecret.
*/}}
{{- define "taskstream.secretName" -}}
{{- printf "%s-secrets" (include "taskstream.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Secret holding the database URL: database.existingSecret, or the chart's.
*/}}
{{- define "taskstream.databaseSecretName" -}}
{{- default (include "taskstream.secretName" .) .Values.database.existingSecret }}
{{- end }}

{{/*
The Secret holding the JWT secret: auth.existingSecret, or the chart's.
*/}}
{{- define "taskstream.authSecretName" -}}
{{- default (include "taskstream.secretName" .) .Values.auth.existingSecret }}
{{- end }}

{{/*
A service's Deployment, or its StatefulSet when .statefulSet is true.
*/}}
{{- define "taskstream.deployment" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- if and .partitionBound (gt (int $v.replicaCount) (int $root.Values.kafka.partitions)) }}
{{- fail (printf "%s: replicaCount %d exceeds kafka.partitions %d; replicas beyond the partition count would own no partition" .component (int $v.replicaCount) (int $root.Values.kafka.partitions)) }}
{{- end }}
{{- if and .statefulSet (gt (len (include "taskstream.componentName" .)) 52) }}
{{- fail (printf "%s: the StatefulSet name %s is longer than 52 characters (its pods' revision label would not fit); shorten the release name or set fullnameOverride" .component (include "taskstream.componentName" .)) }}
{{- end }}
apiVersion: apps/v1
kind: {{ if .statefulSet }}StatefulSet{{ else }}Deployment{{ end }}
metadata:
  name: {{ include "taskstream.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "taskstream.componentLabels" . | nindent 4 }}
spec:
  {{- if not .hpa }}
  replicas: {{ $v.replicaCount | int }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- if .statefulSet }}
  serviceName: {{ include "taskstream.headlessServiceName" . }}
  podManagementPolicy: Parallel
  {{- with $v.updateStrategy }}
  updateStrategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- else }}
  {{- with $v.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "taskstream.componentSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "taskstream.componentLabels" . | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if or .database .auth }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      serviceAccountName: {{ include "taskstream.serviceAccountName" $root }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "taskstream.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            - /usr/local/bin/{{ .component }}
          ports:
            - name: http
              containerPort: {{ $v.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "taskstream.configMapName" $root }}
          env:
            - name: TASKSTREAM_HTTP__PORT
              value: {{ $v.port | int | quote }}
            - name: TASKSTREAM_KAFKA__CLIENT_ID
              value: {{ printf "%s-%s" $root.Values.kafka.clientId .component | quote }}
            {{- if .database }}
            - name: TASKSTREAM_DATABASE__URL
              valueFrom:
                secretKeyRef:
                  name: {{ include "taskstream.databaseSecretName" $root }}
                  key: {{ $root.Values.database.secretKey }}
            {{- end }}
            {{- if eq .component "command-service" }}
            - name: TASKSTREAM_SNAPSHOTS__ENABLED
              value: {{ $v.snapshots.enabled | toString | quote }}
            - name: TASKSTREAM_SNAPSHOTS__INTERVAL_SECS
              value: {{ $v.snapshots.intervalSecs | int | quote }}
            - name: TASKSTREAM_SNAPSHOTS__MIN_RECORDS
              value: {{ $v.snapshots.minRecords | int | quote }}
            {{- if and .statefulSet (gt (int $v.replicaCount) 1) }}
            {{- /* Replica i of n owns the partitions p with p mod n = i; its ordinal is the
            number ending its pod name (HOSTNAME), and the peers are the pods' stable addresses. */}}
            {{- $name := include "taskstream.componentName" . }}
            {{- $headless := include "taskstream.headlessServiceName" . }}
            {{- $peers := list }}
            {{- range $i := until (int $v.replicaCount) }}
            {{- $peers = append $peers (printf "http://%s-%d.%s.%s.svc:%d" $name $i $headless $root.Release.Namespace (int $v.port)) }}
            {{- end }}
            - name: TASKSTREAM_OWNERSHIP__PEERS
              value: {{ join "," $peers | quote }}
            - name: TASKSTREAM_OWNERSHIP__FORWARD_TIMEOUT_MS
              value: {{ $v.ownership.forwardTimeoutMs | int | quote }}
            {{- end }}
            {{- end }}
            {{- if eq .component "projection-service" }}
            - name: TASKSTREAM_PROJECTION__PARTITIONS
              value: {{ $v.partitions | default "all" | toString | quote }}
            - name: TASKSTREAM_PROJECTION__IDLE_AFTER_MS
              value: {{ $v.idleAfterMs | int | quote }}
            - name: TASKSTREAM_PROJECTION__IDLE_FETCH_WAIT_MS
              value: {{ $v.idleFetchWaitMs | default 200 | int | quote }}
            {{- if and .partitionBound (gt (int $v.replicaCount) 1) }}
            {{- /* Each replica projects its share; the ordinal is the number ending its pod name. */}}
            - name: TASKSTREAM_PROJECTION__REPLICAS
              value: {{ $v.replicaCount | int | quote }}
            {{- end }}
            {{- end }}
            {{- if .auth }}
            - name: TASKSTREAM_AUTH__JWT_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ include "taskstream.authSecretName" $root }}
                  key: {{ $root.Values.auth.secretKey }}
            {{- end }}
            {{- with $root.Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /health
              port: http
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /health
              port: http
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /ready
              port: http
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
A service's Service: its HTTP port (API, /health, /ready, /metrics) under the name "http".
*/}}
{{- define "taskstream.service" -}}
{{- $root := .root }}
{{- $v := .values }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "taskstream.componentName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "taskstream.componentLabels" . | nindent 4 }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "taskstream.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
{{- end }}

{{/*
The headless Service of a StatefulSet (its serviceName): a DNS name per pod, through which
command-service replicas reach each other.
Its port is named "peer", not "http", so the ServiceMonitor (which scrapes the "http" ports) does
not scrape the pods a second time through it. It lists pods before they are ready, so a replica
that is still starting answers for itself (503 with Retry-After) rather than not resolving.
*/}}
{{- define "taskstream.headlessService" -}}
{{- $root := .root }}
{{- $v := .values }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "taskstream.headlessServiceName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "taskstream.componentLabels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "taskstream.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: peer
      port: {{ $v.port }}
      targetPort: http
      protocol: TCP
{{- end }}
