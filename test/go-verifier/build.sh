#!/usr/bin/env bash
# Builds the independent Go verifier (once per source version) outside the
# repository and prints the binary's path. Used by .ci/run and by the tests
# (test/src/support/go-verifier.ts). BULWARK_CACHE_DIR overrides the cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ -d /usr/local/go/bin ] && export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "go is not installed (looked in PATH and /usr/local/go/bin)" >&2; exit 3; }
sum="$(cat "$here/go.mod" "$here/go.sum" "$here"/*.go | sha256sum | cut -c1-16)"
dir="${BULWARK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bulwark}"
bin="$dir/go-verifier-$sum"
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  (cd "$here" && go build -trimpath -o "$bin.tmp.$$" .) >&2
  mv "$bin.tmp.$$" "$bin"
fi
echo "$bin"
