#!/usr/bin/env bash
# `npm test` after the build: every test, in two mocha runs.
#   1. test/unit in parallel (test/.mocharc.unit.json, 2 workers): tests of
#      our code alone (an RTSP or ONVIF fake at most, on ports from freePort,
#      which no two workers share).
#   2. test/nodes, test/e2e, test/browser one after another (test/.mocharc.json):
#      real Node-RED processes, brokers, cameras and ffmpeg, timed against each
#      other, so never two suites at once.
# Both always run; each prints mocha's "N passing" (and "N failing") lines,
# and the exit code is non-zero if either failed. The failover soak runs
# TWINREC_SOAK_S seconds here (default 60); `npm run test:soak` runs 600.
set -u
cd "$(dirname "$0")/../.."
mocha=node_modules/.bin/mocha
start=$SECONDS
"$mocha" --config test/.mocharc.unit.json
unit=$?
echo "  unit tests: exit $unit after $((SECONDS - start)) s"
mid=$SECONDS
"$mocha" --config test/.mocharc.json
rest=$?
echo "  node, e2e and browser tests: exit $rest after $((SECONDS - mid)) s"
if [ "$unit" -ne 0 ] || [ "$rest" -ne 0 ]; then exit 1; fi
