#!/usr/bin/env bash
# Checks every service's Prometheus exposition with `promtool check metrics`,
# as CI does: runs test/dist/e2e/metrics.test.js (real tenancy and identity on
# port 0 against the local Postgres and NATS, scraped after real calls) with
# BULWARK_METRICS_DUMP_DIR set, so each service's last /metrics answer is
# written to <dir>/<service>.prom, then pipes each file through promtool.
# Fails on a parse error or on any lint finding (promtool exits non-zero).
#
# promtool reads the Prometheus text format (0.0.4) only; the services serve
# that to clients that do not ask for OpenMetrics, and OpenMetrics (the same
# metrics) to Prometheus, which asks for it.
#
# Needs promtool; when it is missing and Go is present, installs the pinned
# version with `go install` (into $(go env GOPATH)/bin, kept between runs: the
# first build takes several minutes). Without either it prints a skip line
# and exits 0. Needs the workspace built (npx turbo run build).
#
#   deploy/scripts/metrics-check.sh
#   PROMETHEUS_VERSION=v0.316.0 deploy/scripts/metrics-check.sh
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

find_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    return 0
  fi
  if command -v go >/dev/null 2>&1; then
    local gobin
    gobin="$(go env GOBIN)"
    [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
    if [ ! -x "$gobin/promtool" ]; then
      echo "metrics-check: installing promtool (prometheus ${PROMETHEUS_VERSION}) with go install" >&2
      go install "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}" >&2
    fi
    echo "$gobin/promtool"
    return 0
  fi
  return 1
}

if ! PROMTOOL="$(find_promtool)"; then
  echo "metrics-check: SKIP (neither promtool nor go is installed)"
  exit 0
fi
echo "metrics-check: $PROMTOOL"

dump="$(mktemp -d)"
trap 'rm -rf "$dump"' EXIT
echo "metrics-check: scraping tenancy and identity (test/dist/e2e/metrics.test.js)"
if ! (cd "$root/test" && BULWARK_METRICS_DUMP_DIR="$dump" node --test --test-reporter=dot dist/e2e/metrics.test.js); then
  echo "metrics-check: FAIL the metrics test failed" >&2
  exit 1
fi

status=0
for service in tenancy identity; do
  file="$dump/$service.prom"
  if [ ! -s "$file" ]; then
    echo "metrics-check: FAIL no exposition was written for $service" >&2
    status=1
    continue
  fi
  if out="$("$PROMTOOL" check metrics < "$file" 2>&1)"; then
    echo "metrics-check:   $service ok ($(grep -c '^# TYPE' "$file") metric families)"
  else
    printf '%s\n' "$out" >&2
    echo "metrics-check: FAIL promtool check metrics ($service)" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "metrics-check: passed"
exit "$status"
