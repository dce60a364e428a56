"""Security scan: checkov over every rendered kustomization and every manifest file.

Every finding is either fixed in the manifest or skipped on the object with a
reason (``checkov.io/skipN: CKV_K8S_NN=reason`` in metadata.annotations, and a
YAML comment at the field). The tests assert zero failed checks (except the
teaching counter-examples listed in :data:`COUNTER_EXAMPLES`, each with its
reason), that each skip carries a reason, and that checkov parsed every object
it was given: it answers exit 0 with zero resources for a file it cannot read.

Offline: ``BC_SKIP_MAPPING=TRUE`` stops checkov fetching its guideline
mapping, ``--skip-download`` stops it downloading anything else, and no
Bridgecrew/Prisma API key is given. checkov lives in its own virtual
environment (``.venv-scan``, installed by scripts/setup.sh) because its pins
clash with the course's. One scan of everything runs per test session.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmserve.world import manifests
from tests.manifests.test_schemas import kustomizations, manifest_files
from tests.support import REPO, missing_tool

SCAN_PY = REPO / ".venv-scan" / "bin" / "python"
ROOT = manifests.MANIFESTS_DIR

#: Files that are wrong on purpose (a chapter shows what its checker says about them).
COUNTER_EXAMPLES = {
    "examples/service/wrong-namespace.yaml": "the Service chapter's namespace trap: it lands in `default`",
    "examples/storage/pod-mounts-read-write.yaml": "the storage checker's counter-example: a bare Pod "
                                                   "mounting the weights read-write, without limits or probes",
}


@pytest.fixture(scope="session")
def checkov_python() -> Path:
    if not SCAN_PY.exists():
        missing_tool(f"checkov is not installed at {SCAN_PY} (scripts/setup.sh installs it)")
    return SCAN_PY


def checkov(python: Path, *args: str) -> list[dict]:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
           "LOG_LEVEL": "WARNING"}
    env.pop("BC_API_KEY", None)
    proc = subprocess.run([str(python), "-m", "checkov.main", "--framework", "kubernetes", "--skip-download",
                           "--compact", "-o", "json", *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    # checkov exits 1 when a check fails; anything else but 0 is a crash.
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    data = json.loads(proc.stdout.strip() or "[]")
    return data if isinstance(data, list) else [data]


@dataclass(frozen=True)
class Scan:
    """One checkov run over a folder holding a copy of each target (a rendered kustomization or a file)."""

    reports: list[dict]
    expected: dict[str, set[str]]   # target name -> the resources checkov must report for it

    def checks(self, kind: str, target: str | None = None) -> list[dict]:
        return [c for r in self.reports for c in (r.get("results") or {}).get(kind, [])
                if target is None or Path(c.get("file_path", "")).stem == target]

    def seen(self, target: str) -> set[str]:
        return {c["resource"] for kind in ("passed_checks", "failed_checks", "skipped_checks")
                for c in self.checks(kind, target)}


#: Kinds checkov has checks for (it reports nothing for a PV, a PVC or a Namespace, whatever they hold).
CHECKED_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Service",
                 "Secret", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


def resource_ids(objects: list[dict]) -> set[str]:
    """How checkov names each object it checks: ``Kind.namespace.name`` (``default`` when unset)."""
    return {f"{o['kind']}.{(o.get('metadata') or {}).get('namespace', 'default')}.{o['metadata']['name']}"
            for o in objects if o.get("kind") in CHECKED_KINDS}


def target_name(path: Path) -> str:
    return str(path.relative_to(ROOT)).replace("/", "__").removesuffix(".yaml")


@pytest.fixture(scope="session")
def scan(checkov_python, tmp_path_factory) -> Scan:
    folder = tmp_path_factory.mktemp("scan")
    expected = {}
    targets = [("rendered__" + target_name(k), manifests.render(k)) for k in kustomizations(ROOT)]
    targets += [(target_name(f), manifests.load(f)) for f in manifest_files(ROOT)]
    for name, objects in targets:
        (folder / f"{name}.yaml").write_text(manifests.to_yaml(objects))
        expected[name] = resource_ids(objects)
    return Scan(checkov(checkov_python, "-d", str(folder)), expected)


def failures(scan: Scan, target: str | None = None) -> list[str]:
    return [f"{c['check_id']} {c['resource']}: {c['check_name']} ({Path(c.get('file_path', '')).name})"
            for c in scan.checks("failed_checks", target)]


def test_checkov_parsed_every_object(scan):
    """A file checkov cannot parse adds no resource and no failure: every object must be reported."""
    missing = {t: sorted(ids - scan.seen(t)) for t, ids in scan.expected.items() if ids - scan.seen(t)}
    assert sum(map(len, scan.expected.values())) >= 10 and not missing, missing


def test_a_broken_file_is_noticed(checkov_python, tmp_path):
    """The count check bites: checkov answers rc 0 and zero resources for a file it cannot parse."""
    (tmp_path / "broken.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x\n")
    reports = checkov(checkov_python, "-d", str(tmp_path))
    assert sum((r.get("summary") or r).get("resource_count", 0) for r in reports) == 0


KUSTOMIZATIONS = ["rendered__" + target_name(k) for k in kustomizations(ROOT)]
FILES = [target_name(f) for f in manifest_files(ROOT)
         if str(f.relative_to(ROOT)) not in COUNTER_EXAMPLES]


@pytest.mark.parametrize("target", KUSTOMIZATIONS + FILES)
def test_no_failed_checks(scan, target):
    assert failures(scan, target) == []


def test_counter_examples_exist_and_do_fail(scan):
    for rel, reason in COUNTER_EXAMPLES.items():
        assert (ROOT / rel).is_file() and reason
        assert failures(scan, target_name(ROOT / rel)), f"{rel} is listed as a counter-example but passes"


def test_every_skip_has_a_reason(scan):
    skipped = scan.checks("skipped_checks", "rendered__base")
    assert skipped, "expected the Deployment's documented skips"
    for check in scan.checks("skipped_checks"):
        reason = ((check.get("check_result") or {}).get("suppress_comment") or "").strip()
        assert len(reason) > 20, f"{check['check_id']} is skipped without a real reason: {reason!r}"


def test_deployment_fixes_what_it_can(scan):
    # Findings fixed in the manifest rather than skipped must stay fixed.
    target = target_name(ROOT / "base" / "vllm-deployment.yaml")
    skipped_ids = {c["check_id"] for c in scan.checks("skipped_checks", target)}
    passed_ids = {c["check_id"] for c in scan.checks("passed_checks", target)}
    for fixed in ("CKV_K8S_40",   # high UID
                  "CKV_K8S_22",   # read-only root filesystem
                  "CKV_K8S_20",   # no privilege escalation
                  "CKV_K8S_28",   # capabilities dropped (NET_RAW)
                  "CKV_K8S_8", "CKV_K8S_9",  # liveness and readiness probes
                  "CKV_K8S_13"):  # memory limit
        assert fixed in passed_ids and fixed not in skipped_ids, fixed
