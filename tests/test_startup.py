"""Start-up stays light: ``import relook`` and the CLI's entry load no heavy library (torch, timm, OpenCV,
matplotlib, faiss, h5py), so ``relook --help`` and ``from relook import query`` start fast. Library modules
import at their top; where a function imports lazily it is for this (or an optional dependency)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ["torch", "timm", "cv2", "matplotlib", "faiss", "h5py", "kornia", "transformers", "scipy", "sklearn"]


def loaded_by(*modules: str) -> list[str]:
    """The HEAVY packages in ``sys.modules`` after importing ``modules`` in a fresh interpreter."""
    code = (
        f"import json, sys; import {', '.join(modules)}; print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_relook_and_cli_stay_light():
    assert loaded_by("relook", "relook.cli", "relook.query", "relook.pipeline", "relook.experiment") == []


def test_check_sees_a_heavy_import():
    assert loaded_by("relook.store") == ["h5py"]  # the HDF5 store is not light: the probe sees it
