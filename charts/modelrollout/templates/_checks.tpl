{{/*
Rules across values that values.schema.json cannot say plainly; each failure says what to do.
*/}}
{{- define "modelrollout.checks" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: replicas that do not see each other would all move the same traffic" -}}
{{- end -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.existingSecret) -}}
{{- fail "webhook.enabled needs webhook.existingSecret: the name of a Secret holding the shared secret (the chart never takes the secret itself)" -}}
{{- end -}}
{{- if and .Values.notifications.enabled (not .Values.notifications.existingSecret) -}}
{{- fail "notifications.enabled needs notifications.existingSecret: the name of a Secret holding the webhook URLs (the chart never takes them)" -}}
{{- end -}}
{{- if and .Values.notifications.enabled (not (or .Values.notifications.keys.slackUrl .Values.notifications.keys.webhookUrl)) -}}
{{- fail "notifications.enabled needs notifications.keys.slackUrl or notifications.keys.webhookUrl: the Secret's key holding a URL" -}}
{{- end -}}
{{- if and .Values.notifications.keys.webhookSigningSecret (not .Values.notifications.keys.webhookUrl) -}}
{{- fail "notifications.keys.webhookSigningSecret needs notifications.keys.webhookUrl: it signs the generic webhook's requests" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (lt (int .Values.replicaCount) 2) -}}
{{- fail "podDisruptionBudget.enabled needs replicaCount >= 2: on one replica it blocks every node drain" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- fail "podDisruptionBudget.minAvailable must be below replicaCount, or no pod may ever be evicted" -}}
{{- end -}}
{{- if and (has .Values.webhook.port (list .Values.metrics.port .Values.health.port)) .Values.webhook.enabled -}}
{{- fail "webhook.port must differ from metrics.port and health.port" -}}
{{- end -}}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) -}}
{{- fail "metrics.port must differ from health.port" -}}
{{- end -}}
{{- end -}}
