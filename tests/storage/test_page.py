"""book/storage.md says what the manifests and the helpers say.

Every value the page restates from a manifest (names, sizes, access modes, the UID the
container runs as) is read here from the manifest and compared, and every ``kubectl``
command the lab's live cells print (``llmserve.storage.live.by_hand``) is on the page.
"""
from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from llmserve.core.names import system
from llmserve.storage import checks, live
from tests.support import REPO

PAGE = (REPO / "book" / "storage.md").read_text(encoding="utf-8")
#: How kubectl abbreviates access modes in `get` and `describe` (persistent-volumes/#access-modes).
ABBREVIATED = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def blocks(language: str) -> list[str]:
    """The page's fenced code blocks of one language."""
    return re.findall(rf"```{language}\n(.*?)```", PAGE, flags=re.S)


def text_line(prefix: str) -> list[str]:
    """The columns of the one line, in the page's expected-output blocks, that starts with ``prefix``."""
    lines = [ln for b in blocks("text") for ln in b.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return lines[0].split()


def run_as_user(obj: dict) -> int:
    spec = obj["spec"]
    spec = (spec.get("template") or {}).get("spec") or spec
    return int(spec["securityContext"]["runAsUser"])


# --- The by-hand path is the lab's -----------------------------------------------------
@pytest.mark.parametrize("step", ["default-class", "get", "watch", "describe", "release", "delete"])
def test_each_by_hand_command_is_on_the_page(step):
    assert live.by_hand(step) in PAGE, f"the page lacks the lab's `{live.by_hand(step)}`"


def test_the_page_applies_the_files_the_lab_applies_in_its_order():
    files = re.findall(r"-f (\S+)", live.by_hand("apply"))
    by_hand = PAGE[PAGE.index("(storage-live)="):PAGE.index("(storage-exercises)=")]
    positions = [by_hand.index(f"kubectl apply -f {f}\n") for f in files]
    assert positions == sorted(positions) and len(files) == 3


def test_the_reclaim_section_patch_is_the_labs():
    command = next(b for b in blocks("bash") if b.startswith("kubectl patch pv"))
    assert " ".join(command.replace("\\\n", " ").split()) == live.by_hand("release")
    inline = re.search(r"kubectl patch pv (\S+) --type json -p '(\[\{\"op\":\"remove\"[^']*)'", PAGE)
    assert inline.group(1) == system().pv
    assert all(op in json.loads(_release_json()) for op in json.loads(inline.group(2)))


def _release_json() -> str:
    return live.by_hand("release").split(" -p ", 1)[1].strip("'")


# --- Values restated from the manifests ----------------------------------------------------
def test_the_expected_get_output_matches_the_manifests():
    pv, pvc = live.course_volume(), live.course_claim()
    modes = ",".join(ABBREVIATED[m] for m in pv["spec"]["accessModes"])
    ref = pv["spec"]["claimRef"]
    assert text_line(f"persistentvolume/{pv['metadata']['name']}  ")[1:6] == [
        pv["spec"]["capacity"]["storage"], modes, pv["spec"]["persistentVolumeReclaimPolicy"], "Bound",
        f"{ref['namespace']}/{ref['name']}"]
    # A bound claim shows its volume's capacity and access modes (status.capacity, status.accessModes).
    assert text_line(f"persistentvolumeclaim/{pvc['metadata']['name']}  ")[1:5] == [
        "Bound", pvc["spec"]["volumeName"], pv["spec"]["capacity"]["storage"], modes]
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == ""   # the empty columns


def test_the_expected_describe_output_matches_the_manifests():
    pv, pvc = live.course_volume(), live.course_claim()
    describe = next(b for b in blocks("text") if b.startswith("Name:"))
    fields = dict(re.findall(r"^(\w[\w ]*):\s+(\S.*)$", describe, flags=re.M))
    assert fields["Name"] == pvc["metadata"]["name"] and fields["Namespace"] == pvc["metadata"]["namespace"]
    assert fields["Volume"] == pvc["spec"]["volumeName"] and fields["Capacity"] == pv["spec"]["capacity"]["storage"]
    assert fields["Access Modes"] == ",".join(ABBREVIATED[m] for m in pvc["spec"]["accessModes"])
    labels = re.findall(r"^(?:Labels:)?\s+([\w./-]+=[\w.-]+)$", describe, flags=re.M)
    assert labels == [f"{k}={v}" for k, v in sorted(pvc["metadata"]["labels"].items())]


def test_the_created_lines_name_the_objects():
    for obj in live.course_objects():
        kind = obj["kind"].lower()
        assert f"{kind}/{obj['metadata']['name']} created" in PAGE


def test_the_uid_on_the_page_is_the_one_the_container_runs_as():
    uid = run_as_user(live.base_object("Deployment"))
    said = {int(n) for n in re.findall(r"\buid (\d+)", PAGE, flags=re.I)}
    assert said == {uid}, f"the page says uid {said}, the Deployment runs as {uid}"
    # The exercise's example Pod runs as the same user, so what it can write is what vLLM could.
    assert run_as_user(live.example("pod-mounts-read-write")) == uid


def test_the_host_path_and_model_folder_on_the_page_are_the_manifests():
    names = system()
    host = live.course_volume()["spec"]["hostPath"]
    assert f"hostPath: {{path: {host['path']}, type: {host['type']}}}" in PAGE
    assert f"ls {names.host_model_dir}/config.json" in PAGE
    assert f"hf download {checks.HUB_REPO} --local-dir {names.host_model_dir}" in PAGE
    assert f"--model {names.model_path}" in PAGE


def test_the_sizes_the_page_compares_are_the_manifests():
    capacity = live.course_volume()["spec"]["capacity"]["storage"]
    too_big = live.example("claim-too-big")["spec"]["resources"]["requests"]["storage"]
    assert f"asks for {too_big} of a {capacity} volume" in PAGE
    assert f"and asks for {too_big}" in PAGE and f"{too_big} > {capacity}" in PAGE
    assert f"Nothing enforces {capacity} on a hostPath" in PAGE


def test_the_exercise_snippet_runs_and_shows_what_the_solution_says():
    snippet = next(b for b in blocks("python") if "claim-read-write-many" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "storage.md", "exec"), {})
    text = out.getvalue()
    assert "access mode ReadWriteMany is not offered by the volume (it offers ReadOnlyMany)" in text
    assert "problem" in text.splitlines()[0]
