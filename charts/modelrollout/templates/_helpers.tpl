{{/* Names and labels shared by every template. */}}

{{- define "modelrollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name alone when it already says modelrollout. */}}
{{- define "modelrollout.fullname" -}}
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

{{- define "modelrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelrollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelrollout.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelrollout
{{- end -}}

{{- define "modelrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelrollout.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelrollout.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "modelrollout.peeringName" -}}
{{- default (include "modelrollout.fullname" .) .Values.leaderElection.name -}}
{{- end -}}

{{/*
The grants, as in deploy/rbac.yaml. Those on cluster-scoped resources always go in the
ClusterRole; the namespaced ones go there too when the operator watches the whole cluster, or in
a Role in each watched namespace.
*/}}
{{- define "modelrollout.clusterRules" -}}
# kopf discovers which custom resources exist, and notices new ones.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if and .Values.leaderElection.enabled (not .Values.watchNamespaces) }}
# Leader election: kopf watches the peering object and patches its keep-alive into it.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end -}}

{{- define "modelrollout.namespacedRules" -}}
# The rollouts: watched, their finalizer and kopf's annotations patched.
- apiGroups: [modelrollout.io]
  resources: [modelrollouts]
  verbs: [list, watch, patch]
- apiGroups: [modelrollout.io]
  resources: [modelrollouts/status]
  verbs: [patch]
# What the traffic routers read and change; watched, so that a rollout waiting for
# KServe moves as soon as KServe reports.
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, create, patch]
# Metric templates named by templateRef.
- apiGroups: [modelrollout.io]
  resources: [metrictemplates]
  verbs: [get]
# Credentials, only through Secret references (git, MLflow, Prometheus, signers).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events with reason constants.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and .Values.leaderElection.enabled .Values.watchNamespaces }}
# Leader election: kopf watches the peering object and patches its keep-alive into it.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch]
{{- end }}
{{- end -}}
