"""Running a file by path in another Python: its output back, its failure and its overrun explained."""
from __future__ import annotations

import sys

import pytest

from llmserve.core.errors import ServerError
from llmserve.serving.vllm_env import run_file


def script(tmp_path, body: str):
    path = tmp_path / "job.py"
    path.write_text(body)
    return path


def test_the_output_comes_back_and_the_run_is_isolated(tmp_path):
    # -I: no script folder on sys.path, so the file imports nothing that lies beside it.
    (tmp_path / "beside.py").write_text("X = 1\n")
    out = run_file(sys.executable, script(tmp_path, "import sys\ntry:\n    import beside\nexcept ImportError:\n"
                                          "    print('isolated', sys.argv[1])\n"), ["hi"],
                   timeout_s=30, what="the job", fix="-")
    assert out.stdout.strip() == "isolated hi"


def test_a_failure_shows_the_end_of_its_output_and_the_fix(tmp_path):
    with pytest.raises(ServerError, match="the job failed \\(exit 3\\)") as err:
        run_file(sys.executable, script(tmp_path, "import sys\nprint('the reason', file=sys.stderr)\nsys.exit(3)\n"),
                 [], timeout_s=30, what="the job", fix="do this")
    assert "the reason" in err.value.what and err.value.fix == "do this"


def test_a_run_past_its_time_is_stopped(tmp_path):
    with pytest.raises(ServerError, match="the job took longer than 1 s"):
        run_file(sys.executable, script(tmp_path, "import time\ntime.sleep(30)\n"), [], timeout_s=1,
                 what="the job", fix="-")
