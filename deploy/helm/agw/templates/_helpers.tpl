{{- define "agw.labels" -}}
app.kubernetes.io/part-of: agw
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "agw.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* An exec probe of an admin URL on the pod's loopback (values.yaml probes). */}}
{{- define "agw.probe" -}}
exec:
  command: [/usr/local/bin/node, /app/cli/src/probe.ts, {{ .url | quote }}{{ if .live }}, --live{{ end }}]
{{- end -}}
