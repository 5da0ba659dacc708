{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "fds-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless it already has it. */}}
{{- define "fds-worker.fullname" -}}
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

{{- define "fds-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "fds-worker.labels" -}}
helm.sh/chart: {{ include "fds-worker.chart" . }}
app.kubernetes.io/part-of: fds-worker
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The worker: selector labels, then all labels. */}}
{{- define "fds-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fds-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}
{{- define "fds-worker.workerLabels" -}}
{{ include "fds-worker.labels" . }}
{{ include "fds-worker.selectorLabels" . }}
{{- end }}

{{- define "fds-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fds-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fds-worker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The bundled Redis Cluster (redisCluster.enabled): names and labels. */}}
{{- define "fds-worker.redis.fullname" -}}
{{- printf "%s-redis" (include "fds-worker.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- define "fds-worker.redis.headless" -}}
{{- printf "%s-headless" (include "fds-worker.redis.fullname" .) }}
{{- end }}
{{- define "fds-worker.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fds-worker.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis-cluster
{{- end }}
{{- define "fds-worker.redis.labels" -}}
{{ include "fds-worker.labels" . }}
{{ include "fds-worker.redis.selectorLabels" . }}
{{- end }}
{{- define "fds-worker.redis.secretName" -}}
{{- default (printf "%s-auth" (include "fds-worker.redis.fullname" .)) .Values.redisCluster.auth.existingSecret }}
{{- end }}

{{/* Stable DNS name of Redis pod N: <sts>-N.<headless>.<ns>.svc.<domain> */}}
{{- define "fds-worker.redis.podHost" -}}
{{- $ctx := index . 0 }}{{- $i := index . 1 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "fds-worker.redis.fullname" $ctx) $i (include "fds-worker.redis.headless" $ctx) $ctx.Release.Namespace $ctx.Values.clusterDomain }}
{{- end }}

{{/* Space-separated host:port of every bundled Redis node. */}}
{{- define "fds-worker.redis.nodeList" -}}
{{- $nodes := list }}
{{- range $i := until (int .Values.redisCluster.nodes) }}
{{- $nodes = append $nodes (printf "%s:6379" (include "fds-worker.redis.podHost" (list $ $i))) }}
{{- end }}
{{- join " " $nodes }}
{{- end }}

{{/* The worker's seed nodes: redis.nodes, or every bundled node. */}}
{{- define "fds-worker.redisNodes" -}}
{{- if .Values.redis.nodes }}
{{- join "," .Values.redis.nodes }}
{{- else if .Values.redisCluster.enabled }}
{{- $nodes := list }}
{{- range $i := until (int .Values.redisCluster.nodes) }}
{{- $nodes = append $nodes (printf "redis://%s:6379" (include "fds-worker.redis.podHost" (list $ $i))) }}
{{- end }}
{{- join "," $nodes }}
{{- else }}
{{- /* The seed's own StatefulSet (redis-cluster, headless Service redis-cluster) in this namespace. */}}
{{- $nodes := list }}
{{- range $i := until 6 }}
{{- $nodes = append $nodes (printf "redis://redis-cluster-%d.redis-cluster:6379" $i) }}
{{- end }}
{{- join "," $nodes }}
{{- end }}
{{- end }}

{{/* The Secret and key holding the worker's Redis password, as "name/key"; empty = no password. */}}
{{- define "fds-worker.redisPasswordRef" -}}
{{- if .Values.redis.auth.existingSecret }}
{{- printf "%s/%s" .Values.redis.auth.existingSecret .Values.redis.auth.passwordKey }}
{{- else if .Values.redisCluster.enabled }}
{{- printf "%s/%s" (include "fds-worker.redis.secretName" .) "worker-password" }}
{{- end }}
{{- end }}

{{- define "fds-worker.redisUsername" -}}
{{- if .Values.redis.auth.username }}
{{- .Values.redis.auth.username }}
{{- else if and .Values.redisCluster.enabled (not .Values.redis.auth.existingSecret) }}
{{- .Values.redisCluster.auth.workerUser }}
{{- end }}
{{- end }}
