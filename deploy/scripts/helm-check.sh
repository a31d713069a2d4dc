#!/usr/bin/env bash
# Lints and renders the Bulwark chart (deploy/helm/bulwark) as CI does:
# `helm lint --strict` and `helm template` with the default values, with every
# service enabled, and with every optional resource switched on. Fails on the
# first error or lint warning.
#
# Needs helm; when it is missing and Go is present, installs the pinned
# version with `go install` (into $(go env GOPATH)/bin). Without either it
# prints a skip line and exits 0, so machines without Go do not fail CI.
#
#   deploy/scripts/helm-check.sh            # from anywhere in the checkout
#   HELM_VERSION=v3.22.0 deploy/scripts/helm-check.sh
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chart="$(cd "$here/../helm/bulwark" && pwd)"

find_helm() {
  if command -v helm >/dev/null 2>&1; then
    command -v helm
    return 0
  fi
  if command -v go >/dev/null 2>&1; then
    local gobin
    gobin="$(go env GOBIN)"
    [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
    if [ ! -x "$gobin/helm" ]; then
      echo "helm-check: installing helm ${HELM_VERSION} with go install" >&2
      go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
    fi
    echo "$gobin/helm"
    return 0
  fi
  return 1
}

if ! HELM="$(find_helm)"; then
  echo "helm-check: SKIP (neither helm nor go is installed)"
  exit 0
fi
echo "helm-check: $("$HELM" version --short 2>/dev/null || "$HELM" version)"

all_services=()
for s in tenancy identity keys audit compliance; do
  all_services+=(--set "services.${s}.enabled=true")
done
everything=(
  "${all_services[@]}"
  --set defaults.autoscaling.enabled=true
  --set networkPolicy.enabled=true
  --set networkPolicy.allowExternal=false
  --set config.otlpEndpoint=http://otel-collector:4318
  --set secrets.existingSecret=bulwark-secrets
  --set metrics.port=9464
  --set metrics.serviceMonitor.enabled=true
)

run() {
  local label="$1"; shift
  echo "helm-check: ${label}"
  local out
  # Lint: any [WARNING] or [ERROR] fails (--strict).
  if ! out="$("$HELM" lint "$chart" --strict "$@" 2>&1)"; then
    printf '%s\n' "$out" >&2
    echo "helm-check: FAIL helm lint (${label})" >&2
    exit 1
  fi
  # Render to /dev/null; errors (including schema and validation failures) fail.
  if ! out="$("$HELM" template t "$chart" --namespace bulwark "$@" 2>&1 >/dev/null)"; then
    printf '%s\n' "$out" >&2
    echo "helm-check: FAIL helm template (${label})" >&2
    exit 1
  fi
  if [ -n "$out" ]; then
    # helm template prints warnings on stderr even when it succeeds.
    printf '%s\n' "$out" >&2
    echo "helm-check: FAIL helm template printed warnings (${label})" >&2
    exit 1
  fi
  echo "helm-check:   ok"
}

run "default values"
run "all services enabled" "${all_services[@]}"
run "all services and optional resources" "${everything[@]}"

# A value the chart must refuse: a short service secret.
if "$HELM" template t "$chart" --set secrets.developmentMode=true --set secrets.serviceSecret=too-short >/dev/null 2>&1; then
  echo "helm-check: FAIL a serviceSecret under 32 characters was accepted" >&2
  exit 1
fi
# And any secret value outside development mode (it would be in the manifests).
if "$HELM" template t "$chart" --set secrets.bootstrapToken=a-plain-value-that-would-leak-0123456789 >/dev/null 2>&1; then
  echo "helm-check: FAIL a plain secret value was accepted outside secrets.developmentMode" >&2
  exit 1
fi

# Schema validation of the rendered objects against the Kubernetes API, offline:
# kubeconform (go install) with JSON schemas converted from the OpenAPI document
# in the k8s.io/kubernetes Go module (the module proxy serves it, ~17 MB once).
# The ServiceMonitor is a CRD the Kubernetes schemas do not hold: skipped.
K8S_VERSION="${K8S_VERSION:-v1.31.4}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
if command -v go >/dev/null 2>&1; then
  gobin="$(go env GOBIN)"
  [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
  if [ ! -x "$gobin/kubeconform" ]; then
    echo "helm-check: installing kubeconform ${KUBECONFORM_VERSION} with go install" >&2
    go install "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}" >&2
  fi
  schemas="$(go env GOPATH)/k8s-json-schemas/${K8S_VERSION}"
  if [ ! -f "$schemas/deployment-apps-v1.json" ]; then
    moddir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    node "$here/k8s-schemas.mjs" "$moddir/api/openapi-spec/swagger.json" "$schemas"
  fi
  validate() {
    local label="$1"; shift
    echo "helm-check: kubeconform ${label}"
    if ! "$HELM" template t "$chart" --namespace bulwark "$@" \
      | "$gobin/kubeconform" -strict -summary -skip ServiceMonitor \
          -schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" -; then
      echo "helm-check: FAIL the rendered objects do not match the Kubernetes ${K8S_VERSION} schemas (${label})" >&2
      exit 1
    fi
  }
  three=()
  for s in tenancy identity keys audit compliance; do
    three+=(--set "services.${s}.enabled=true" --set "services.${s}.replicas=3")
  done
  off=(
    --set defaults.podDisruptionBudget.enabled=false --set defaults.autoscaling.enabled=false
    --set networkPolicy.enabled=false --set metrics.serviceMonitor.enabled=false --set metrics.enabled=false
    --set tests.enabled=false --set migrations.enabled=false --set serviceAccount.create=false
  )
  validate "default values"
  validate "every service at 3 replicas" "${three[@]}"
  validate "every service, every optional resource off" "${three[@]}" "${off[@]}"
  validate "every service, every optional resource on" "${everything[@]}"
  validate "development mode (chart-made Secret)" --set secrets.developmentMode=true --set secrets.existingSecret=
else
  echo "helm-check: kubeconform SKIP (go is not installed)"
fi
echo "helm-check: passed"
