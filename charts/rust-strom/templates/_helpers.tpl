{{/* The name of every object the chart creates. */}}
{{- define "rust-strom.fullname" -}}
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

{{- define "rust-strom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rust-strom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rust-strom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rust-strom.labels" -}}
{{ include "rust-strom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Namespaces the controller reads in: the watched ones, its own (the
published Service) and the default certificate's. */}}
{{- define "rust-strom.rbacNamespaces" -}}
{{- $namespaces := list .Release.Namespace -}}
{{- range .Values.controller.watchNamespaces -}}
{{- $namespaces = append $namespaces . -}}
{{- end -}}
{{- with .Values.controller.defaultCertificate -}}
{{- $namespaces = append $namespaces (first (splitList "/" .)) -}}
{{- end -}}
{{- $namespaces | uniq | toJson -}}
{{- end -}}

{{/* The controller's flags, as a YAML list. Flags left at the binary's
default are still given when the chart has a value for them, so that what
runs is what values.yaml says. */}}
{{- define "rust-strom.args" -}}
{{- $c := .Values.controller -}}
{{- $args := list (printf "--ingress-class=%s" $c.ingressClass) -}}
{{- if $c.watchIngressWithoutClass -}}
{{- $args = append $args "--watch-ingress-without-class=true" -}}
{{- end -}}
{{- if $c.allowExternalName -}}
{{- $args = append $args "--allow-external-name=true" -}}
{{- end -}}
{{- with $c.watchNamespaces -}}
{{- $args = append $args (printf "--watch-namespace=%s" (join "," .)) -}}
{{- end -}}
{{- with $c.secretLabelSelector -}}
{{- $args = append $args (printf "--secret-label-selector=%s" .) -}}
{{- end -}}
{{- if $c.publishStatusAddress -}}
{{- $args = append $args (printf "--publish-status-address=%s" (join "," $c.publishStatusAddress)) -}}
{{- else if $c.publishService -}}
{{- $args = append $args (printf "--publish-service=%s/%s" .Release.Namespace (include "rust-strom.fullname" .)) -}}
{{- end -}}
{{- $args = append $args (printf "--request-timeout=%s" $c.requestTimeout) -}}
{{- $args = append $args (printf "--shutdown-grace=%ds" (int $c.shutdownGraceSeconds)) -}}
{{- if gt (int $c.workers) 0 -}}
{{- $args = append $args (printf "--workers=%d" (int $c.workers)) -}}
{{- end -}}
{{- $args = append $args (printf "--access-log=%s" $c.accessLog) -}}
{{- with $c.trustedProxies -}}
{{- $args = append $args (printf "--trusted-proxies=%s" (join "," .)) -}}
{{- end -}}
{{- with $c.defaultCertificate -}}
{{- $args = append $args (printf "--default-ssl-certificate=%s" .) -}}
{{- end -}}
{{- $args = append $args (printf "--https-redirect-port=%d" (int $c.httpsRedirectPort)) -}}
{{- $args = append $args (printf "--sync-debounce=%s" $c.syncDebounce) -}}
{{- $args = append $args (printf "--election-id=%s" $c.election.id) -}}
{{- $args = append $args (printf "--election-lease-duration=%s" $c.election.leaseDuration) -}}
{{- $args = append $args (printf "--election-renew-deadline=%s" $c.election.renewDeadline) -}}
{{- $args = append $args (printf "--election-retry-period=%s" $c.election.retryPeriod) -}}
{{- $limits := $c.limits -}}
{{- range $key, $flag := dict "clientHeaderTimeout" "client-header-timeout" "clientBodyTimeout" "client-body-timeout" "clientSendTimeout" "client-send-timeout" "http2IdleTimeout" "http2-idle-timeout" "proxySendTimeout" "proxy-send-timeout" "proxyReadTimeout" "proxy-read-timeout" "tlsHandshakeTimeout" "tls-handshake-timeout" "maxRequestHeaderSize" "max-request-header-size" "encodedSlashes" "encoded-slashes" -}}
{{- with index $limits $key -}}
{{- $args = append $args (printf "--%s=%s" $flag .) -}}
{{- end -}}
{{- end -}}
{{- if gt (int $limits.maxConnections) 0 -}}
{{- $args = append $args (printf "--max-connections=%d" (int $limits.maxConnections)) -}}
{{- end -}}
{{- if not $limits.serverHeader -}}
{{- $args = append $args "--server-header=false" -}}
{{- end -}}
{{- if $c.compression -}}
{{- $args = append $args "--compression" -}}
{{- end -}}
{{- if $c.proxyProtocol -}}
{{- if not $c.trustedProxies -}}
{{- fail "controller.proxyProtocol needs controller.trustedProxies: the load balancers whose PROXY headers are believed" -}}
{{- end -}}
{{- $args = append $args "--proxy-protocol" -}}
{{- end -}}
{{- $d := .Values.dashboard -}}
{{- if $d.enabled -}}
{{- if and $d.listenAll (not $d.tokenSecret.name) -}}
{{- fail "dashboard.listenAll needs dashboard.tokenSecret.name: a dashboard on every address must ask for a token" -}}
{{- end -}}
{{- $args = append $args (printf "--dashboard-addr=%s:%d" (ternary "0.0.0.0" "127.0.0.1" $d.listenAll) (int $d.port)) -}}
{{- else -}}
{{- $args = append $args "--dashboard=false" -}}
{{- end -}}
{{- range $c.extraArgs -}}
{{- $args = append $args . -}}
{{- end -}}
{{- toYaml $args -}}
{{- end -}}
