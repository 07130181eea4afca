{{/*
Chart name, truncated to 63 characters (the DNS label limit for Service names).
*/}}
{{- define "mlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Resource-name prefix. With the release called "mlops" (as in the docs) it is just "mlops", so the
predictor Service is "mlops-predictor", the default DRIFT_MONITOR_PREDICTOR_SERVICE.
*/}}
{{- define "mlops.fullname" -}}
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
Name of one component's objects: "<fullname>-<component>". Call with
(dict "root" $ "component" "predictor").
*/}}
{{- define "mlops.componentName" -}}
{{- printf "%s-%s" (include "mlops.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: only name, instance and component, because selectors are immutable.
Call with (dict "root" $ "component" "predictor").
*/}}
{{- define "mlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Standard labels for every object. Call with (dict "root" $ "component" "predictor").
*/}}
{{- define "mlops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mlops.selectorLabels" . }}
app.kubernetes.io/part-of: mlops
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/*
"repository:tag" of an image values block ({repository, tag, pullPolicy}). An empty tag is the
chart's appVersion, the project's one version, so the chart and the images it was released with
move together. Call with (dict "root" $ "image" .Values.predictor.image).
*/}}
{{- define "mlops.image" -}}
{{- $tag := include "mlops.scalar" .image.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}

{{/*
In-cluster MLflow URL, the MLFLOW_TRACKING_URI of every service.
*/}}
{{- define "mlops.mlflowUri" -}}
{{- printf "http://%s:%v" (include "mlops.componentName" (dict "root" . "component" "mlflow")) .Values.mlflow.service.port }}
{{- end }}

{{/*
Env entries of every MLflow client of the chart (trainer, predictor, drift monitor): the in-cluster
server, and no usage telemetry (MLflow 3 clients report to a host outside the cluster, which the
egress NetworkPolicies block anyway; off, nothing waits on it).
*/}}
{{- define "mlops.mlflowClientEnv" -}}
- name: MLFLOW_TRACKING_URI
  value: {{ include "mlops.mlflowUri" . | quote }}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
{{- end }}

{{- define "mlops.pushgatewayUrl" -}}
{{- if .Values.driftMonitor.pushgatewayUrl }}
{{- .Values.driftMonitor.pushgatewayUrl }}
{{- else if .Values.monitoring.enabled }}
{{- printf "http://%s:9091" (include "mlops.componentName" (dict "root" . "component" "pushgateway")) }}
{{- end }}
{{- end }}

{{/*
Whether the release runs its own PostgreSQL for the predictions ledger: the ledger is on and no
external database (ledger.database.external.existingSecret) is given. "true" or empty.
*/}}
{{- define "mlops.ledger.internal" -}}
{{- if and .Values.ledger.enabled (not .Values.ledger.database.external.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Env entry for the ledger's database URL under the variable name given as .name: from the
in-chart database's Secret ("<fullname>-ledger-database", key url) or from the external one.
Call with (dict "root" $ "name" "PREDICTOR_LEDGER_DATABASE_URL").
*/}}
{{- define "mlops.ledger.urlEnv" -}}
{{- $external := .root.Values.ledger.database.external -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      {{- if $external.existingSecret }}
      name: {{ $external.existingSecret }}
      key: {{ $external.key }}
      {{- else }}
      name: {{ include "mlops.componentName" (dict "root" .root "component" "ledger-database") }}
      key: url
      {{- end }}
{{- end }}

{{- define "mlops.apiTokenSecret" -}}
{{- default (include "mlops.componentName" (dict "root" . "component" "api-token")) .Values.apiToken.existingSecret }}
{{- end }}

{{/*
Env entry for the bearer token (apiToken.enabled), under the variable name given as .name.
Call with (dict "root" $ "name" "PREDICTOR_API_TOKEN").
*/}}
{{- define "mlops.apiTokenEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "mlops.apiTokenSecret" .root }}
      key: {{ .root.Values.apiToken.secretKey }}
{{- end }}

{{/*
A component's `env` map from values as EnvVar entries, sorted by name and quoted. Names the chart
sets itself are refused, so a value can never silently shadow the wiring.
Call with (dict "env" .Values.predictor.env "reserved" (list "PREDICTOR_PORT" ...)).
*/}}
{{- define "mlops.env" -}}
{{- range $name := keys .env | sortAlpha }}
{{- if has $name $.reserved }}
{{- fail (printf "%s is set by the chart; remove it from the component's env values" $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ include "mlops.scalar" (index $.env $name) | quote }}
{{- end }}
{{- end }}

{{/*
A values scalar as the text a user wrote. Helm reads every YAML number as float64, and
`toString` prints large ones in exponent form (8388608 -> "8.388608e+06"), which no integer
setting accepts: whole numbers print as integers, everything else as it is.
*/}}
{{- define "mlops.scalar" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Pod-level fields shared by every pod of the chart. Service-account tokens are not mounted unless
the pod talks to the Kubernetes API (drift monitor, Prometheus), which sets its own.
*/}}
{{- define "mlops.podDefaults" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
Where a pod may run: the release-wide `scheduling` values, each field replaced by the component's
own `scheduling` when that one is set. A topology spread constraint without a labelSelector counts
the component's own pods (its selector labels), so values files need not spell the release name.
Call with (dict "root" $ "name" "predictor" "component" .Values.predictor.scheduling); the helm
test pod passes an empty dict and gets the release-wide settings.
*/}}
{{- define "mlops.scheduling" -}}
{{- $component := .component | default dict }}
{{- $release := .root.Values.scheduling }}
{{- range $field := list "nodeSelector" "affinity" "tolerations" }}
{{- with (index $component $field) | default (index $release $field) }}
{{ $field }}:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- with $component.topologySpreadConstraints | default $release.topologySpreadConstraints }}
{{- $ownPods := dict "matchLabels" (include "mlops.selectorLabels" (dict "root" $.root "component" $.name) | fromYaml) }}
{{- $constraints := list }}
{{- range . }}
{{- if hasKey . "labelSelector" }}
{{- $constraints = append $constraints . }}
{{- else }}
{{- $constraints = append $constraints (merge (dict "labelSelector" (deepCopy $ownPods)) .) }}
{{- end }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- with $component.priorityClassName | default $release.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
What a user adds to a component's pods: the release-wide values merged with the component's own.
A component's podLabels/podAnnotations key, extraEnv name or extraVolumes name replaces the
release-wide one; extraEnvFrom and extraVolumeMounts add up (release-wide first). One part per
call, rendered where it belongs:
  "metadata"      the pod's labels (the chart's, then podLabels) and annotations (`annotations`,
                  the chart's own such as config checksums, then podAnnotations)
  "env"           EnvVar entries (extraEnv) after the chart's own
  "envFrom"       EnvFromSource entries (extraEnvFrom)
  "volumeMounts"  mounts of the main container (extraVolumeMounts)
  "volumes"       volumes of the pod (extraVolumes)
What the chart sets is never replaced silently: a podLabels key among the chart's labels (the
selectors depend on them), a podAnnotations key among `annotations`, an extraEnv name among
`reserved` or the component's `env` map, and an extraVolumes name among `reserved` fail the render.
Call with (dict "root" $ "component" "predictor" "values" .Values.predictor "part" "env"
"reserved" (list "PREDICTOR_PORT" ...)); the helm test pod passes an empty dict as values.
*/}}
{{- define "mlops.podExtras" -}}
{{- $values := .values | default dict }}
{{- $release := .root.Values }}
{{- $path := printf "%s (or the release-wide value)" .component }}
{{- if eq .part "metadata" }}
{{- $chartLabels := include "mlops.labels" (dict "root" .root "component" .component) | fromYaml }}
{{- $labels := merge (dict) ($values.podLabels | default dict) ($release.podLabels | default dict) }}
{{- range $key := keys $labels | sortAlpha }}
{{- if hasKey $chartLabels $key }}
{{- fail (printf "podLabels of %s: %s is a label the chart sets (its selectors use them); choose another key" $path $key) }}
{{- end }}
{{- end }}
labels:
  {{- include "mlops.labels" (dict "root" .root "component" .component) | nindent 2 }}
  {{- with $labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $chartAnnotations := .annotations | default dict }}
{{- $annotations := merge (dict) ($values.podAnnotations | default dict) ($release.podAnnotations | default dict) }}
{{- range $key := keys $annotations | sortAlpha }}
{{- if hasKey $chartAnnotations $key }}
{{- fail (printf "podAnnotations of %s: %s is an annotation the chart sets; choose another key" $path $key) }}
{{- end }}
{{- end }}
{{- with merge $annotations $chartAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- else if eq .part "env" }}
{{- $own := $values.extraEnv | default list }}
{{- $ownNames := list }}
{{- range $own }}{{ $ownNames = append $ownNames .name }}{{ end }}
{{- $entries := list }}
{{- range $release.extraEnv | default list }}
{{- if not (has .name $ownNames) }}{{ $entries = append $entries . }}{{ end }}
{{- end }}
{{- $reserved := concat (.reserved | default list) (keys ($values.env | default dict)) }}
{{- $entries = concat $entries $own }}
{{- range $entries }}
{{- if has .name $reserved }}
{{- fail (printf "extraEnv of %s: %s is set by the chart or the component's env map; remove it from extraEnv" $path .name) }}
{{- end }}
{{- end }}
{{- with $entries }}
{{- toYaml . }}
{{- end }}
{{- else if eq .part "envFrom" }}
{{- with concat ($release.extraEnvFrom | default list) ($values.extraEnvFrom | default list) }}
{{- toYaml . }}
{{- end }}
{{- else if eq .part "volumeMounts" }}
{{- with concat ($release.extraVolumeMounts | default list) ($values.extraVolumeMounts | default list) }}
{{- toYaml . }}
{{- end }}
{{- else if eq .part "volumes" }}
{{- $own := $values.extraVolumes | default list }}
{{- $ownNames := list }}
{{- range $own }}{{ $ownNames = append $ownNames .name }}{{ end }}
{{- $entries := list }}
{{- range $release.extraVolumes | default list }}
{{- if not (has .name $ownNames) }}{{ $entries = append $entries . }}{{ end }}
{{- end }}
{{- $entries = concat $entries $own }}
{{- range $entries }}
{{- if has .name ($.reserved | default list) }}
{{- fail (printf "extraVolumes of %s: the chart already has a volume named %s; choose another name" $path .name) }}
{{- end }}
{{- end }}
{{- with $entries }}
{{- toYaml . }}
{{- end }}
{{- else }}
{{- fail (printf "mlops.podExtras: unknown part %q" .part) }}
{{- end }}
{{- end }}

{{/*
The emptyDir every container gets at /tmp (the root filesystem is read-only).
*/}}
{{- define "mlops.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ include "mlops.scalar" .Values.tmpSizeLimit }}
{{- end }}

{{/*
Init container that blocks until MLflow answers /health, so a Job fails for real reasons only
and `kubectl get pods` shows "Init:0/1" while MLflow starts: `trainer wait-for-mlflow` from the
trainer's own image, so no extra image is needed. Call with (dict "root" $ "image" .Values.trainer.image).
*/}}
{{- define "mlops.waitForMlflow" -}}
- name: wait-for-mlflow
  image: {{ include "mlops.image" (dict "root" .root "image" .image) }}
  imagePullPolicy: {{ .image.pullPolicy }}
  args: [wait-for-mlflow]
  env:
    - name: MLFLOW_TRACKING_URI
      value: {{ include "mlops.mlflowUri" .root | quote }}
    - name: TRAINER_MLFLOW_WAIT_SECONDS
      value: {{ int64 .root.Values.trainer.job.mlflowWaitSeconds | quote }}
  securityContext:
    {{- toYaml .root.Values.containerSecurityContext | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {cpu: 200m, memory: 128Mi}
{{- end }}

{{/*
Retry policy of a training run (hook Job and CronJob). Exit code 2 is invalid settings: a retry
cannot fix it, so the Job fails at once and `helm install` reports it instead of retrying.
*/}}
{{- define "mlops.trainer.jobPolicy" -}}
backoffLimit: {{ include "mlops.scalar" .Values.trainer.job.backoffLimit }}
activeDeadlineSeconds: {{ include "mlops.scalar" .Values.trainer.job.activeDeadlineSeconds }}
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: trainer
        operator: In
        values: [2]
{{- end }}

{{/*
Pod template spec of a training run, shared by the install hook Job and the CronJob.
*/}}
{{- define "mlops.trainer.podSpec" -}}
{{- $reservedEnv := list "MLFLOW_TRACKING_URI" "MLFLOW_DISABLE_TELEMETRY" "TRAINER_MODEL_NAME" "TRAINER_CHAMPION_ALIAS" "TRAINER_LEDGER_DATABASE_URL" }}
{{- include "mlops.podDefaults" . }}
{{- include "mlops.scheduling" (dict "root" . "name" "trainer" "component" .Values.trainer.scheduling) }}
serviceAccountName: {{ include "mlops.fullname" . }}
automountServiceAccountToken: false
restartPolicy: Never
initContainers:
  {{- include "mlops.waitForMlflow" (dict "root" . "image" .Values.trainer.image) | nindent 2 }}
containers:
  - name: trainer
    image: {{ include "mlops.image" (dict "root" . "image" .Values.trainer.image) }}
    imagePullPolicy: {{ .Values.trainer.image.pullPolicy }}
    # `trainer train` (as `make train`); `promote` is for humans, `wait-for-mlflow` is the init container.
    args: [train]
    env:
      {{- include "mlops.mlflowClientEnv" . | nindent 6 }}
      - name: TRAINER_MODEL_NAME
        value: {{ .Values.model.name | quote }}
      - name: TRAINER_CHAMPION_ALIAS
        value: {{ .Values.model.alias | quote }}
      {{- if .Values.ledger.enabled }}
      # Train on what production saw: the ledger's labelled predictions join the dataset and the
      # newest of them judge challenger against champion (docs/model.md). Read-only use.
      {{- include "mlops.ledger.urlEnv" (dict "root" . "name" "TRAINER_LEDGER_DATABASE_URL") | nindent 6 }}
      {{- end }}
      {{- include "mlops.env" (dict "env" .Values.trainer.env "reserved" $reservedEnv) | trim | nindent 6 }}
      {{- with include "mlops.podExtras" (dict "root" . "component" "trainer" "values" .Values.trainer "part" "env" "reserved" $reservedEnv) }}
      {{- . | nindent 6 }}
      {{- end }}
    {{- with include "mlops.podExtras" (dict "root" . "component" "trainer" "values" .Values.trainer "part" "envFrom") }}
    envFrom:
      {{- . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.containerSecurityContext | nindent 6 }}
    resources:
      {{- toYaml .Values.trainer.resources | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- with include "mlops.podExtras" (dict "root" . "component" "trainer" "values" .Values.trainer "part" "volumeMounts") }}
      {{- . | nindent 6 }}
      {{- end }}
volumes:
  {{- include "mlops.tmpVolume" . | nindent 2 }}
  {{- with include "mlops.podExtras" (dict "root" . "component" "trainer" "values" .Values.trainer "part" "volumes" "reserved" (list "tmp")) }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}


{{/*
The retrain controller's names: its Service/ServiceAccount/Role/state ConfigMap are all
"<fullname>-retrain-controller"; the trainer CronJob it copies runs from "<fullname>-trainer".
*/}}
{{- define "mlops.retraining.name" -}}
{{- include "mlops.componentName" (dict "root" . "component" "retrain-controller") }}
{{- end }}

{{- define "mlops.retraining.cronJob" -}}
{{- include "mlops.componentName" (dict "root" . "component" "trainer") }}
{{- end }}

{{/*
The Secret holding the webhook's bearer token: "<fullname>-retraining-webhook" (made by the chart)
or retraining.webhookToken.existingSecret.
*/}}
{{- define "mlops.retraining.tokenSecret" -}}
{{- default (include "mlops.componentName" (dict "root" . "component" "retraining-webhook")) .Values.retraining.webhookToken.existingSecret }}
{{- end }}

{{/*
Where Alertmanager posts the alerts: the controller's Service, port 8080, POST /v1/alerts.
*/}}
{{- define "mlops.retraining.webhookUrl" -}}
{{- printf "http://%s:8080/v1/alerts" (include "mlops.retraining.name" .) }}
{{- end }}
