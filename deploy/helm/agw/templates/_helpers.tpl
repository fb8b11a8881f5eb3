{{- define "agw.labels" -}}
app.kubernetes.io/part-of: agw
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "agw.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
