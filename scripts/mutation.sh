#!/usr/bin/env bash
# Mutation score of the cluster-facing modules (issue 15): mutmut 3.8.1 over
# llmserve/world/cluster.py and llmserve/world/portforward.py with their tests.
# Not part of CI: 1247 mutants take over an hour on 2 busy cores. Usage: bash scripts/mutation.sh
# MUTATION_KEEP=1 keeps the work folder, to read a survivor with `mutmut show NAME`
# or re-run some with `mutmut run NAME...` there. MUTATION_CHILDREN=N runs N mutants
# at once (default 1; most tests wait on sockets, so 2 helps even on 2 cores).
# It never changes the working tree: it copies the repository to a temporary
# folder, adds the mutmut settings to that copy's pyproject.toml and runs there.
# Three tests read cluster.py's source (the delete call sites, and the bite tests
# that mutate the source themselves); mutmut rewrites that source with its
# trampolines, so they are left out of the mutation run (they run in the suite).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
mutmut="$repo/.venv-mut/bin/mutmut"

# A throwaway environment (git-ignored, not in requirements.txt): mutmut only,
# seeing the course's packages through a .pth file pointing at .venv.
if [ ! -x "$mutmut" ]; then
  "$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')/bin/python3" -m venv .venv-mut
  .venv-mut/bin/pip install -q mutmut==3.8.1
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$site" > "$(.venv-mut/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_course_venv.pth"
fi

work=$(mktemp -d)
[ -n "${MUTATION_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
# The working tree without git, environments, caches and build outputs (the .cache
# folder holds downloaded models: over 100 MB the mutation tests never read).
tar --exclude=./.git --exclude='./.venv*' --exclude=./.cache --exclude=./_build \
    --exclude=./mutants --exclude='__pycache__' --exclude='*.egg-info' -cf - . | tar -xf - -C "$work"
cat >> "$work/pyproject.toml" <<'EOF'

[tool.mutmut]
source_paths = ["llmserve"]
only_mutate = ["llmserve/world/cluster.py", "llmserve/world/portforward.py"]
pytest_add_cli_args_test_selection = ["tests/world/test_cluster.py", "tests/world/test_portforward.py", "tests/world/test_mode.py", "tests/fakes/test_apiserver.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:timeout", "-m", "not slow", "-k", "not inside_cluster_py and not each_safety_check and not every_delete_in_the_package"]
also_copy = ["manifests", "notebooks", "book", "_config.yml", "_toc.yml", "scripts", "requirements.txt"]
EOF
cd "$work"
nice -n 19 "$mutmut" run --max-children "${MUTATION_CHILDREN:-1}" > mutmut.log 2>&1 || { tail -c 3000 mutmut.log; exit 1; }
"$mutmut" results --all true > results.txt
# Each line reads "    llmserve.world.MODULE.x_function__mutmut_N: STATUS" (a status may hold spaces).
count() { sed 's/^.*: //' | sort | uniq -c; }
for m in cluster portforward; do
  echo "llmserve/world/$m.py:"
  { grep "llmserve\.world\.$m\." results.txt || true; } | count
done
echo "all:"; count < results.txt
echo "not detected:"; grep -E ": (survived|no tests|suspicious|not checked)$" results.txt || true
[ -z "${MUTATION_KEEP:-}" ] || echo "kept in $work: cd there and run $mutmut show NAME"
