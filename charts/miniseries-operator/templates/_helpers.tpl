{{/* The release's resources are named after the release, trimmed to a DNS label. */}}
{{- define "miniseries.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "miniseries.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "miniseries.labels" -}}
{{ include "miniseries.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "miniseries.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "miniseries.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces served when not cluster-wide: the listed ones, or the release's own. */}}
{{- define "miniseries.watchedNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- join "," .Values.watch.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Prometheus Operator monitors: only where the cluster serves their API, or when forced. */}}
{{- define "miniseries.monitoringEnabled" -}}
{{- if or .Values.monitoring.force (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}true{{- end -}}
{{- end -}}

{{- /*
Least privilege: exactly what the operator does, nothing more.
  scalingsweeps             kopf watches them and patches finalizers/annotations
  scalingsweeps/status      the plan, runs, fit and conditions
  scalingsweeps/finalizers  children carry ownerReferences with blockOwnerDeletion
  <backend jobs>, jobs      one job per run of each backend listed in `backends` (backendJobs),
                            one tokenizer Job per sweep; deleted to retry a failed run from its checkpoint
  events                    Events on sweeps: create, and patch to count a repeat
                            (one Event with a count, not one per reconcile)
  secrets (get)             only with admission.secretOptInLabel, and never cluster-wide: the
                            opt-in label of the Secret a sweep names, read as metadata only.
                            RBAC cannot grant metadata alone, and a cluster-wide `get` returns
                            every Secret's data; so here only in the Roles of watched namespaces
                            (watch.allNamespaces false), and with allNamespaces through
                            RoleBindings in admission.secretNamespaces (rbac.yaml). No list or watch.
No pods, no namespaces; the operator's own S3 credentials come from envFrom.
*/ -}}
{{- /*
Each job backend's resource (operator/src/miniseries/control/backends/: JobBackend.rbac_rules, one
module per backend): granted when `backends` lists it. tests/integration/test_chart.py checks this
table against the operator's registry.
*/ -}}
{{- define "miniseries.backendJobs" -}}
pytorchjob: {group: kubeflow.org, resource: pytorchjobs}
trainjob: {group: trainer.kubeflow.org, resource: trainjobs}
{{- end -}}

{{- define "miniseries.workloadRules" -}}
- apiGroups: [miniseries.dev]
  resources: [scalingsweeps]
  verbs: [get, list, watch, patch]
- apiGroups: [miniseries.dev]
  resources: [scalingsweeps/status]
  verbs: [get, patch]
- apiGroups: [miniseries.dev]
  resources: [scalingsweeps/finalizers]
  verbs: [update]
{{- $jobs := include "miniseries.backendJobs" . | fromYaml }}
{{- range .Values.backends }}
{{- with index $jobs . }}
- apiGroups: [{{ .group }}]
  resources: [{{ .resource }}]
  verbs: [get, list, watch, create, delete, patch]  # patch: suspend and resume (the sweep's spec.suspend)
{{- end }}
{{- end }}
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, list]  # list: why admission refused a job's pods (FailedCreate, control/decide/pod_troubles.py)
- apiGroups: [""]
  resources: [pods]
  verbs: [list]  # why a run's pod waits or failed: the kubelet's status, read by label (control/decide/pod_troubles.py)
{{- if and .Values.admission.secretOptInLabel (not .Values.watch.allNamespaces) }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
{{- if .Values.kueue.enabled }}
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list, patch]  # list: Kueue's word on each job (control/io/observe.py); patch: spec.active for spec.suspend
{{- end }}
{{- end -}}
