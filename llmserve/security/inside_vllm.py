"""Live, inside ``.venv-vllm``: build vLLM's app without an engine and describe it (run by path).

Used by the API-key chapter through ``llmserve.security.vllm_app``, which runs this file
with the CPU vLLM's interpreter (``python -I``), so it imports nothing from ``llmserve``.

It builds vLLM's FastAPI app the way ``vllm serve`` does for a generating model
(``build_app`` in vllm/entrypoints/launchers/app.py) without starting an engine, and prints,
as one JSON line: the routes with their methods, the middleware's guarded prefixes, and
which spellings of ``--config FILE`` give the server an ``api-key`` read from a file.
"""
from __future__ import annotations

import json
import os
import tempfile


def describe_app() -> dict:
    """The installed vLLM's routes, guarded prefixes and ``--config`` parsing."""
    # vLLM exists only in the interpreter that runs this file: imported when it runs.
    import vllm
    from vllm.entrypoints.launchers.app import build_app
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.entrypoints.serve.middleware.authenticate import GUARDED_PREFIX
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    app = build_app(parser.parse_args(["--api-key", "probe"]), supported_tasks=("generate",))
    routes: dict[str, set[str]] = {}
    for r in app.routes:   # a Mount (the /metrics ASGI app) has a path and no methods
        routes.setdefault(r.path, set()).update(getattr(r, "methods", None) or ())

    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "key.yaml")
        with open(config, "w") as f:
            f.write("api-key: from-the-file\n")
        config_forms = {form: parser.parse_args(args).api_key
                        for form, args in (("--config FILE", ["--config", config]),
                                           ("--config=FILE", [f"--config={config}"]))}
    return {"version": vllm.__version__, "guarded_prefixes": list(GUARDED_PREFIX),
            "routes": {p: sorted(m) for p, m in sorted(routes.items())},
            "config_file_api_key": config_forms}


if __name__ == "__main__":
    print(json.dumps(describe_app()))
