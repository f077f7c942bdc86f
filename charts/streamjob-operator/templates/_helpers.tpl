{{/* The chart name, or nameOverride. */}}
{{- define "streamjob-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects: fullnameOverride, else the release name if it already contains
the chart name (a release called streamjob-operator gives streamjob-operator), else release-chart.
*/}}
{{- define "streamjob-operator.fullname" -}}
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

{{- define "streamjob-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "streamjob-operator.labels" -}}
helm.sh/chart: {{ include "streamjob-operator.chart" . }}
{{ include "streamjob-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamjob
{{- end }}

{{/* What the Deployment and Service select the operator pods by. */}}
{{- define "streamjob-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamjob-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "streamjob-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamjob-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "streamjob-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
"true" when the operator elects a leader (leaderElection.enabled). More than one replica without
leader election is refused.
*/}}
{{- define "streamjob-operator.leaderElection" -}}
{{- $enabled := .Values.leaderElection.enabled }}
{{- if and (not $enabled) (gt (int .Values.replicas) 1) }}
{{- fail (printf "replicas: %d needs leader election, but leaderElection.enabled is false: two operators would run every job twice" (int .Values.replicas)) }}
{{- end }}
{{- ternary "true" "false" $enabled }}
{{- end }}

{{/* The Lease the operators elect a leader with, in the release namespace. */}}
{{- define "streamjob-operator.leaseName" -}}
{{- include "streamjob-operator.fullname" . }}
{{- end }}

{{/* Namespaces that get the streamjob-taskmanager ServiceAccount: the release's and the watched ones. */}}
{{- define "streamjob-operator.taskManagerNamespaces" -}}
{{- $namespaces := prepend .Values.watchNamespaces .Release.Namespace | uniq }}
{{- join "," $namespaces }}
{{- end }}

{{/* The rules the operator needs wherever it runs StreamJobs (ClusterRole or per-namespace Role). */}}
{{- define "streamjob-operator.rules" -}}
- apiGroups: ["streamjob.dev"]
  resources: ["streamjobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["streamjob.dev"]
  resources: ["streamjobs/status"]
  verbs: ["patch"]
- apiGroups: ["streamjob.dev"]
  resources: ["streamjobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
The labels the operator puts on every TaskManager pod it creates (src/operator/names.ts): what the
NetworkPolicies select TaskManagers by.
*/}}
{{- define "streamjob-operator.taskManagerSelectorLabels" -}}
app.kubernetes.io/name: streamjob-taskmanager
app.kubernetes.io/managed-by: streamjob-operator
{{- end }}

{{/*
Namespaces that get the TaskManager NetworkPolicy: the watched ones, else networkPolicy.namespaces
(the operator then runs jobs in any namespace, and the chart cannot know which). Comma-separated.
*/}}
{{- define "streamjob-operator.networkPolicyNamespaces" -}}
{{- join "," (default .Values.networkPolicy.namespaces .Values.watchNamespaces) }}
{{- end }}

{{/* Egress rules both the operator and the TaskManagers need: DNS and the checkpoint storage. */}}
{{- define "streamjob-operator.dnsAndStorageEgress" -}}
{{- range $target := list .Values.networkPolicy.dns .Values.networkPolicy.storage }}
- ports:
    {{- toYaml $target.ports | nindent 4 }}
  {{- with $target.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
