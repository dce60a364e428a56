#!/usr/bin/env bash
# Open the labs: set up as scripts/setup.sh does, then JupyterLab from the course's
# environment (.venv), on loopback with a token, on the notebooks/ folder, with the
# course's kernel. Needs no network once set up (no news feed, no update check).
# Usage: bash scripts/lab.sh [more `jupyter lab` options, e.g. --no-browser]
#   COURSE_LAB_PORT   first port to try (default 8888; the next free one if it is taken)
#   COURSE_LAB_TOKEN  the login token (default: a new random one at every start)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

port=$(.venv/bin/python - "${COURSE_LAB_PORT:-8888}" <<'PY'
import socket, sys
first = int(sys.argv[1])
for port in range(first, first + 50):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    break
else:
    sys.exit(f"lab: ports {first}-{first + 49} are all taken: set COURSE_LAB_PORT to a free one")
PY
)
token=${COURSE_LAB_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(24))')}

# The token travels in the environment, not on the command line (other users see `ps`).
export JUPYTER_TOKEN="$token"
# The course's kernel comes first, before any "python3" kernel in the user's own Jupyter folders.
export JUPYTER_PATH="$PWD/.venv/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
# Default settings of the course's JupyterLab: never ask to fetch news, never check for updates.
export JUPYTER_CONFIG_PATH="$PWD/scripts/lab-config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"

# Jupyter refuses root unless told; as root (a container, CI) say so instead of failing.
as_root=()
[ "$(id -u)" = 0 ] && as_root=(--allow-root)

echo "lab: JupyterLab with the course's kernel ($PWD/.venv/bin/python); stop it with Ctrl+C twice"
echo "lab: open http://127.0.0.1:$port/lab/tree/notebooks?token=$token"
# The root is the repository, so the notebooks' links to ../book/*.md open too.
exec .venv/bin/jupyter-lab \
  --ServerApp.ip=127.0.0.1 --ServerApp.port="$port" --ServerApp.port_retries=0 \
  --ServerApp.root_dir="$PWD" --LabApp.default_url=/lab/tree/notebooks \
  --KernelSpecManager.allowed_kernelspecs=python3 --MappingKernelManager.default_kernel_name=python3 \
  --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
  --LabApp.extension_manager=readonly "${as_root[@]}" \
  "$@"
