"""Every staged failure of the instructors' guide fails as the guide says (issue 9 #6).

The guide (book/workshop/instructors.md) has one section per staged failure, labelled
``(staged-<slug>)=``, with the commands that break the system (```bash), the errors
participants will read (```text) and the troubleshooting entries ({ref}`ts-…`). Each
section has a reproduction here, against the course's own checkers, the strict
Kubernetes schemas or the real local vLLM engine (``.venv-vllm``, tests marked ``vllm``);
the quotes on the page must be what those give.
"""
from __future__ import annotations

import copy
import json
import math
import re
import shlex
import urllib.error
import urllib.request

import pytest

from llmserve.core import names
from llmserve.core.errors import ServerError
from llmserve.core.objects import arg_value, vllm_container
from llmserve.core.vllm import GPU_DEFAULT_BLOCK_SIZE
from llmserve.deployment import budgets, diagnose
from llmserve.kvcache import formula, planner
from llmserve.serving.engine import LocalVLLM
from llmserve.serving.tinymodel import TINY, ensure_tiny_model
from llmserve.storage import rules as storage_rules
from llmserve.troubleshooting import catalogue
from llmserve.world import manifests
from tests.support import KEYED_ENGINE_KEY, REPO, refuses_connections

PAGE = REPO / "book" / "workshop" / "instructors.md"
LABEL = re.compile(r"^\((staged-[a-z0-9-]+)\)=\s*$", re.MULTILINE)
BLOCK = re.compile(r"^```(text|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
REF = re.compile(r"\{ref\}`(ts-[a-z0-9-]+)`")


def _sections() -> dict[str, str]:
    text = PAGE.read_text(encoding="utf-8")
    marks = list(LABEL.finditer(text))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.end():end]
        out[m.group(1)[len("staged-"):]] = body.split("\n## ")[0]   # stop at the next chapter heading
    return out


SECTIONS = _sections()


def quotes(slug: str) -> list[str]:
    return [b.strip() for kind, b in BLOCK.findall(SECTIONS[slug]) if kind == "text"]


def commands(slug: str) -> list[list[str]]:
    """The section's shell commands, each split like a shell would (continuation lines joined)."""
    script = "\n".join(b for kind, b in BLOCK.findall(SECTIONS[slug]) if kind == "bash").replace("\\\n", " ")
    out, pending = [], ""
    for line in script.splitlines():
        pending += line + "\n"
        if pending.count("'") % 2 == 0:      # a newline inside '…' belongs to the argument
            if pending.strip():
                out.append(shlex.split(pending))
            pending = ""
    return out


def patch_of(slug: str) -> tuple[str, object]:
    """The one ``kubectl patch deploy/…`` of a section: (patch type, parsed patch)."""
    [cmd] = [c for c in commands(slug) if c[:1] == ["kubectl"] and "patch" in c and any("deploy/" in a for a in c)]
    assert f"deploy/{names.system().deployment}" in cmd and cmd[cmd.index("-n") + 1] == names.system().namespace
    kind = next((a.split("=", 1)[1] for a in cmd if a.startswith("--type=")), "strategic")
    return kind, json.loads(cmd[cmd.index("-p") + 1])


def json_patch(obj: dict, ops: list[dict]) -> dict:
    """RFC 6902 replace and add (with ``-`` for appending), the two ops the guide uses."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = op["path"].strip("/").split("/")
        target = out
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if op["op"] == "add" and last == "-":
            target.append(op["value"])
        elif op["op"] in ("add", "replace"):
            assert op["op"] == "add" or (int(last) < len(target) if isinstance(target, list) else last in target)
            target[int(last) if isinstance(target, list) else last] = op["value"]
        else:
            raise AssertionError(f"unexpected op {op}")
    return out


def deployment() -> dict:
    return next(o for o in names.base_objects() if o["kind"] == "Deployment")


def assert_valid(obj: dict) -> None:
    assert manifests.validate([obj]) == [], "the patched object must pass the strict schemas"


def json_patched(slug: str) -> dict:
    """The course's Deployment after the section's JSON patch; the API server would accept it."""
    kind, ops = patch_of(slug)
    assert kind == "json", slug
    broken = json_patch(deployment(), ops)
    assert_valid(broken)
    return broken


# ------------------------------------------------------------------- the page itself
def test_every_staged_failure_has_a_reproduction():
    assert set(SECTIONS) == set(REPRODUCED), "a staged failure without a test, or a test without its section"


@pytest.mark.parametrize("slug", sorted(SECTIONS))
def test_each_quote_is_recognised_as_one_of_the_sections_entries(slug):
    entries = set(REF.findall(SECTIONS[slug]))
    assert entries and quotes(slug), slug
    for quote in quotes(slug):
        found = {e.label for e in catalogue.match(quote)}
        assert found & entries, (slug, quote[:80], found)


# --------------------------------------------------------------------- 1. Released
def test_released_claim():
    objs = {o["kind"]: o for o in names.base_objects()}
    cmds = [" ".join(c) for c in commands("released-claim")]
    n = names.system()
    assert cmds == [f"kubectl -n {n.namespace} scale deploy/{n.deployment} --replicas=0",
                    f"kubectl -n {n.namespace} delete pvc {n.pvc}",
                    "kubectl apply -f manifests/base/model-pvc.yaml",
                    f"kubectl -n {n.namespace} scale deploy/{n.deployment} --replicas=1"]
    assert manifests.load_one("base/model-pvc.yaml")["metadata"]["name"] == n.pvc
    # The volume keeps the deleted claim's uid; the claim applied again is a new object.
    released = copy.deepcopy(objs["PersistentVolume"])
    released["spec"]["claimRef"]["uid"] = "uid-of-the-deleted-claim"
    released["status"] = {"phase": "Released"}
    claim = copy.deepcopy(objs["PersistentVolumeClaim"])
    claim["metadata"]["uid"] = "uid-of-the-new-claim"
    verdict = storage_rules.binding_verdict(released, claim, default_storage_class="local-path")
    assert not verdict.binds and verdict.outcome == "pending", verdict
    # The page's undo (a merge patch with nulls) removes what the storage chapter's reuse patch removes.
    undo = re.search(r"kubectl patch pv (\S+) --type merge -p '([^']+)'", SECTIONS["released-claim"])
    assert undo.group(1) == n.pv
    cleared = {k: v for k, v in released["spec"]["claimRef"].items()
               if k not in json.loads(undo.group(2))["spec"]["claimRef"]}
    assert {"/spec/claimRef/" + k for k in released["spec"]["claimRef"].keys() - cleared.keys()} >= \
        {op["path"] for op in storage_rules.reuse_patch(released)}
    released["spec"]["claimRef"] = cleared
    assert storage_rules.binding_verdict(released, claim, default_storage_class="local-path").binds


def test_removing_the_class_from_the_prebound_claim_would_not_have_failed():
    """Why the old staged failure is gone: the course's pair is pre-bound both ways, so it still binds."""
    objs = {o["kind"]: o for o in names.base_objects()}
    claim = copy.deepcopy(objs["PersistentVolumeClaim"])
    del claim["spec"]["storageClassName"]
    assert storage_rules.binding_verdict(objs["PersistentVolume"], claim, default_storage_class="local-path").binds


# ---------------------------------------------------------------- 2. startup probe
def test_startup_probe_shorter_than_the_load():
    broken = json_patched("startup-probe")
    window = budgets.startup_window_s(budgets.Probe.of(broken))
    assert window == 40 and "10 s + 3 × 10 s = 40 s" in SECTIONS["startup-probe"]
    assert window < budgets.startup_window_s(budgets.Probe.of(deployment()))
    # Even from a fast NVMe disk (2 GB/s) the weights alone plus the engine's start take longer.
    weights_gib = formula.weight_bytes(formula.QWEN25_CODER_7B_AWQ) / 2**30
    assert not budgets.probe_budget(10, 10, 3, 5, weights_gib=weights_gib, disk_mb_s=2000).fits
    # The Deployment chapter's diagnosis of the Pod after the kubelet's restart.
    pod = {"metadata": {"name": "vllm-x"}, "status": {"phase": "Running", "containerStatuses": [
        {"name": "vllm", "restartCount": 2, "state": {"running": {}}}]}}
    events = [{"reason": "Killing", "message": quotes("startup-probe")[1]}]
    found = diagnose.diagnose_pod(pod, events)
    assert "startup probe gave up" in found.reason and "failureThreshold" in found.fix


# -------------------------------------------------------------- 3. max_model_len
def test_max_model_len_patch_targets_the_flag():
    assert patch_of("max-model-len")[1][0]["path"].endswith("/args/2")
    assert vllm_container(deployment())["args"][2].startswith("--max-model-len=")
    broken = json_patched("max-model-len")
    wanted = int(arg_value(vllm_container(broken), "--max-model-len"))
    assert wanted > formula.QWEN25_CODER_7B_AWQ.max_position_embeddings


# ------------------------------------------------------------------- 4. KV cache
def test_kv_cache_message_is_the_planners_for_this_model_and_cache():
    c = vllm_container(json_patched("kv-cache"))
    max_len, kv_bytes = int(arg_value(c, "--max-model-len")), int(arg_value(c, "--kv-cache-memory-bytes"))
    model = formula.QWEN25_CODER_7B_AWQ
    assert max_len <= model.max_position_embeddings, "it must pass the model's own limit first"
    # The AWQ build's config.json says float16: 2 bytes per value, as bf16 (the KV-cache chapter).
    plan = planner.plan_from_kv_bytes(kv_bytes, model, "fp16", max_len, GPU_DEFAULT_BLOCK_SIZE)
    assert not plan.fits
    assert quotes("kv-cache") == ["ValueError: " + plan.message]
    per_token = formula.kv_bytes_per_token(model, "fp16")
    assert f"{max_len:,} tokens × {per_token:,} bytes per token = {planner.format_gib(max_len * per_token)} GiB" \
        in SECTIONS["kv-cache"]


# ------------------------------------------------------------- 5. RollingUpdate
def test_rolling_update_needs_two_gpus_on_a_one_gpu_box():
    kind, patch = patch_of("rolling-update")
    assert kind == "strategic"
    broken = copy.deepcopy(deployment())
    broken["spec"]["strategy"] = dict(patch["spec"]["strategy"])
    # The API server fills in the defaults: maxSurge and maxUnavailable 25 % (Deployment docs).
    broken["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert_valid(broken)
    replicas = broken["spec"]["replicas"]
    surge = math.ceil(replicas * 25 / 100)          # maxSurge rounds up
    unavailable = math.floor(replicas * 25 / 100)   # maxUnavailable rounds down
    gpus_per_pod = int(vllm_container(broken)["resources"]["limits"]["nvidia.com/gpu"])
    assert (surge, unavailable) == (1, 0)
    assert (replicas + surge) * gpus_per_pod == 2, "old and new Pod at once"
    pending = {"metadata": {"name": "vllm-new"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": quotes("rolling-update")[0]}]}}
    assert "RollingUpdate" in diagnose.diagnose_pod(pending).fix
    # The undo the page gives is valid again (and a plain apply could not do it: the defaults stay).
    [undo] = [m for m in re.findall(r"`kubectl -n \S+ patch deploy/\S+ -p '([^']+)'`", SECTIONS["rolling-update"])
              if "Recreate" in m]
    strategy = json.loads(undo)["spec"]["strategy"]
    fixed = copy.deepcopy(broken)
    fixed["spec"]["strategy"] = {k: v for k, v in strategy.items() if v is not None}
    assert_valid(fixed)
    assert fixed["spec"]["strategy"] == deployment()["spec"]["strategy"]


# ------------------------------------------------------------- the real engine
KEY = KEYED_ENGINE_KEY


def _start_too_long(log_path) -> str:
    """The tiny engine asked for twice its max_position_embeddings: the log of its refusal."""
    server = LocalVLLM(max_model_len=2 * TINY.max_position_embeddings, log_path=log_path, startup_timeout_s=400)
    with pytest.raises(ServerError):
        server.start()
    return server.log_text()


@pytest.fixture(scope="module")
def engine(tmp_path_factory, keyed_engine):
    """The session's keyed engine (its port was tried while it started: tests/conftest.py) and the
    log of an engine that refused to start."""
    ensure_tiny_model(TINY)
    too_long = _start_too_long(tmp_path_factory.mktemp("engine-logs") / "too-long.log")
    return {"server": keyed_engine, "refused_while_starting": keyed_engine.refused_while_starting,
            "too_long_log": too_long}


def _call(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.vllm
def test_the_engine_refuses_connections_until_it_is_ready(engine):
    assert engine["refused_while_starting"] is True, "vLLM's port must refuse while the engine loads"
    assert not refuses_connections(engine["server"].port)


@pytest.mark.vllm
def test_max_model_len_beyond_the_model_is_refused_as_quoted(engine):
    log = engine["too_long_log"]
    tiny_len, tiny_max = 2 * TINY.max_position_embeddings, TINY.max_position_embeddings
    start = log.index("pydantic_core._pydantic_core.ValidationError")
    real = log[start:].splitlines()[:2]
    # The page's quote is the same message with the course's numbers in place of the tiny model's.
    expected = [line.replace(f"({tiny_len})", "(131072)").replace(f"={float(tiny_max)} ", "=32768.0 ") for line in real]
    [quote] = quotes("max-model-len")
    page = quote.splitlines()
    assert page[0] == expected[0]
    assert expected[1].startswith(page[1]), (page[1], expected[1])
    assert f"={float(formula.QWEN25_CODER_7B_AWQ.max_position_embeddings)} " in page[1]


@pytest.mark.vllm
def test_no_key_and_wrong_model_give_the_quoted_bodies(engine):
    server = engine["server"]
    no_key, wrong_model = quotes("client-errors")
    status, body = _call(f"{server.base_url}/models")
    assert (status, body) == (401, no_key)
    name = re.search(r"The model `([^`]+)`", wrong_model).group(1)
    status, body = _call(f"{server.base_url}/chat/completions", key=KEY,
                         body={"model": name, "messages": [{"role": "user", "content": "hi"}]})
    # vLLM lists the names it serves: the local engine's, where the box lists the Deployment's.
    assert (status, body.replace(server.model, names.system().served_model_name)) == (404, wrong_model)
    assert f'"model":"{name}"' in SECTIONS["client-errors"]


REPRODUCED = {
    "released-claim": test_released_claim,
    "startup-probe": test_startup_probe_shorter_than_the_load,
    "max-model-len": test_max_model_len_beyond_the_model_is_refused_as_quoted,
    "kv-cache": test_kv_cache_message_is_the_planners_for_this_model_and_cache,
    "rolling-update": test_rolling_update_needs_two_gpus_on_a_one_gpu_box,
    "client-errors": test_no_key_and_wrong_model_give_the_quoted_bodies,
}
