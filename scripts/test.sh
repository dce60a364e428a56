#!/usr/bin/env bash
# Every test of the course: unit tests, manifests (schemas, kustomize, security scan),
# notebooks executed offline, the strict book build, and the built book in Chromium.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$(date +%s)
set +e
.venv/bin/python -m pytest -ra "$@"
rc=$?
set -e
echo "tests took $(( $(date +%s) - start )) s"
exit $rc
