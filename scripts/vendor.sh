#!/usr/bin/env bash
# Refresh the console's vendored front-end files from npm packages (built files only, no Node
# build step). Versions are pinned here and recorded in static/vendor/VERSIONS.txt.
set -euo pipefail

HTMX=2.0.11
CHARTJS=4.6.1
TABLER=1.6.1
AXE=4.14.1

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/src/tessera/console/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fetch() {  # fetch <package> <version> <dir>
  mkdir -p "$WORK/$3"
  (cd "$WORK/$3" && npm pack --silent "$1@$2" >/dev/null && tar xzf ./*.tgz)
}

fetch htmx.org "$HTMX" htmx
fetch chart.js "$CHARTJS" chartjs
fetch @tabler/core "$TABLER" tabler
fetch axe-core "$AXE" axe

rm -rf "$DEST"
mkdir -p "$DEST"
cp "$WORK/htmx/package/dist/htmx.min.js" "$DEST/htmx.min.js"
cp "$WORK/chartjs/package/dist/chart.umd.min.js" "$DEST/chart.umd.min.js"
cp "$WORK/tabler/package/dist/css/tabler.min.css" "$DEST/tabler.min.css"
cp "$WORK/tabler/package/dist/js/tabler.min.js" "$DEST/tabler.min.js"
cp "$WORK/axe/package/axe.min.js" "$DEST/axe.min.js"
for lic in htmx chartjs tabler axe; do
  if [ -f "$WORK/$lic/package/LICENSE" ]; then cp "$WORK/$lic/package/LICENSE" "$DEST/LICENSE.$lic"; fi
  if [ -f "$WORK/$lic/package/LICENSE.txt" ]; then cp "$WORK/$lic/package/LICENSE.txt" "$DEST/LICENSE.$lic"; fi
done
cat > "$DEST/VERSIONS.txt" <<TXT
htmx.org $HTMX dist/htmx.min.js
chart.js $CHARTJS dist/chart.umd.min.js
@tabler/core $TABLER dist/css/tabler.min.css dist/js/tabler.min.js
axe-core $AXE axe.min.js (browser tests only)
TXT
(cd "$DEST" && sha256sum ./*.js ./*.css >> VERSIONS.txt)
echo "vendored into $DEST"
