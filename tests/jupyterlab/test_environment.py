"""The environment behind scripts/lab.sh and a workshop hub: pinned, written once, offline settings."""
from __future__ import annotations

import json
import re
import subprocess

from tests.support import REPO, VENV_BIN

LAB_DEFAULTS = REPO / "scripts" / "lab-config" / "labconfig" / "default_setting_overrides.json"
SCHEMAS = VENV_BIN.parent / "share" / "jupyter" / "lab" / "schemas"


def _requirements(path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def test_jupyterlab_is_pinned_in_the_course_environment():
    lines = _requirements(REPO / "requirements.txt")
    assert any(re.fullmatch(r"jupyterlab==\d+\.\d+\.\d+", line) for line in lines), lines


def test_the_hub_environment_is_the_course_one_plus_nbgitpuller():
    lines = _requirements(REPO / "requirements-hub.txt")
    assert lines[0] == "-r requirements.txt", "the hub must install the very same pins"
    assert len(lines) == 2 and re.fullmatch(r"nbgitpuller==\d+\.\d+\.\d+", lines[1]), lines
    page = (REPO / "book" / "workshop" / "participants.md").read_text()
    assert "{literalinclude} ../../requirements-hub.txt" in page, "the participants' page shows the file itself"


def test_lab_defaults_are_settings_the_installed_jupyterlab_knows():
    """A renamed setting would be ignored without a word: check each against JupyterLab's own schema."""
    for plugin_id, values in json.loads(LAB_DEFAULTS.read_text()).items():
        package, plugin = plugin_id.split(":")
        schema = json.loads((SCHEMAS / package / f"{plugin}.json").read_text())
        for key, value in values.items():
            prop = schema["properties"][key]
            allowed = [c["const"] for c in prop.get("oneOf", [])] or None
            assert allowed is None or value in allowed, (plugin_id, key, value, allowed)
            assert isinstance(value, {"boolean": bool, "string": str}[prop["type"]]), (plugin_id, key)
    notification = json.loads(LAB_DEFAULTS.read_text())["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}, "the labs run offline"


def test_lab_sh_is_valid_bash_and_runs_set_up_first():
    script = REPO / "scripts" / "lab.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = [line.strip() for line in script.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines.index("bash scripts/setup.sh") < next(i for i, line in enumerate(lines) if "jupyter-lab" in line)
