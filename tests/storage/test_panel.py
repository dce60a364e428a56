"""The storage panels render at creation and show learner mistakes as messages, never tracebacks."""
from __future__ import annotations

import ipywidgets as W

from llmserve.storage import live, panel


def _controls(explorer) -> dict:
    """The explorer's input widgets by description."""
    return {w.description: w for w in explorer.children[1].children}


def test_explorer_shows_the_course_pair_binding_at_creation():
    explorer = panel.binding_explorer()
    assert isinstance(explorer, W.VBox)
    verdict = explorer.children[2].value
    assert "binds" in verdict and "pre-bound both ways" in verdict
    assert "model-storage-claim" in explorer.children[3].value   # the claim as YAML


def test_explorer_reacts_to_the_class_and_shows_the_trap():
    explorer = panel.binding_explorer()
    c = _controls(explorer)
    c["volumeName"].value = ""
    c["PV reserved by claimRef"].value = False
    c["storageClassName"].value = panel.UNSET
    text = explorer.children[2].value
    assert "new, empty volume" in text and "default StorageClass" in text


def test_explorer_bad_size_and_selector_are_messages():
    explorer = panel.binding_explorer()
    c = _controls(explorer)
    c["requests.storage"].value = "200GB"
    assert "Input problem" in explorer.children[2].value and "Fix:" in explorer.children[2].value
    c["requests.storage"].value = "200Gi"
    c["selector"].value = "app = ="
    assert "not a label requirement" in explorer.children[2].value


def test_explorer_access_modes():
    explorer = panel.binding_explorer()
    c = _controls(explorer)
    c["volumeName"].value = ""
    c["accessModes"].value = ("ReadWriteMany",)
    assert "access mode ReadWriteMany is not offered" in explorer.children[2].value


def test_explorer_selector_and_claim_ref():
    explorer = panel.binding_explorer()
    c = _controls(explorer)
    c["volumeName"].value = ""
    c["PV reserved by claimRef"].value = False
    c["selector"].value = "app.kubernetes.io/component=model-weights"
    assert "does not match the volume&#x27;s labels" in explorer.children[2].value
    c["selector"].value = "app.kubernetes.io/component=model-storage"
    c["PV reserved by claimRef"].value = True
    assert "claimRef names this claim" in explorer.children[2].value


def test_checker_renders_and_survives_bad_yaml():
    checker = panel.claim_checker()
    out = checker.children[3]
    assert "problem" in out.value          # the initial example is broken on purpose
    checker.children[1].value = "kind: [\n"
    checker.children[2].children[2].click()
    assert "not valid YAML" in out.value and "Traceback" not in out.value


def test_checker_against_the_course_volume():
    checker = panel.claim_checker(initial=live.example_text("claim-too-big"))
    out = checker.children[3]
    # Pre-bound both ways: it binds, and the 300Gi the volume does not have is a warning.
    assert "binds to volume model-storage" in out.value and "300Gi" in out.value
    volume = checker.children[2].children[0]
    volume.value = "unreserved"
    assert "does not bind" in out.value
