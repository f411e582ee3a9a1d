"""Start-up stays light: ``import relook`` and the CLI's entry load no heavy library (torch, timm, OpenCV,
matplotlib, faiss, h5py), so ``relook --help`` and ``from relook import query`` start fast. Library modules
import at their top; where a function imports lazily it is for this (or an optional dependency)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
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


FIRST_LINE = """
import json, sys
import typer
from relook.cli import main

def first(*args, **kwargs):  # the command's first line of output: what was imported by then, then stop
    print(json.dumps([str(args[0]), [h for h in HEAVY if h in sys.modules]]), flush=True)
    raise SystemExit(0)

typer.echo = first
main(sys.argv[1:])
"""


def first_line(argv: list[str], cwd: Path) -> tuple[str, list[str]]:
    """(first line a command prints, the HEAVY packages imported before it), from a fresh interpreter."""
    code = f"HEAVY = {HEAVY!r}\n{FIRST_LINE}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, cwd=cwd)
    assert out.stdout.strip(), out.stderr[-2000:]
    line, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    return line, heavy


def test_first_line_before_heavy_imports(tmp_path):
    """`relook run|extract|rerank|benchmark` say what will run, on which data, with which weights, before
    torch & co. are imported (the seconds of silence a long command had)."""
    conf = tmp_path / "exp.yaml"
    conf.write_text(
        "dataset: {name: folder, root: photos_not_made}\n"
        "extractors: [{name: cnn_local, arch: resnet50, pretrained: true}, {name: aliked, weights: aliked-n16}]\n"
        "rerankers: [{name: gv, features: aliked}, {name: rrt, label: rrt-epi, checkpoint: epi.pt}]\n"
        f"out: {tmp_path / 'run'}\n"
    )
    for stage in ("run", "extract", "rerank"):
        line, heavy = first_line([stage, "-c", str(conf)], tmp_path)
        assert heavy == [], (stage, heavy)
        assert line.startswith(f"{stage}: folder at photos_not_made -> {tmp_path / 'run'}"), line
        if stage != "rerank":
            assert "cnn_local(arch=resnet50, pretrained=True)" in line and "aliked(weights=aliked-n16)" in line
        if stage != "extract":
            assert "rrt-epi=rrt(checkpoint=epi.pt)" in line and "gv(features=aliked)" in line
    line, heavy = first_line(["rerank", "-c", str(conf), "--methods", "rrt-epi"], tmp_path)
    assert "rrt-epi" in line and "gv(" not in line and heavy == []
    bench = ROOT / "configs" / "benchmark.yaml"
    line, heavy = first_line(
        ["benchmark", "-c", str(bench), "-s", "data_root=nowhere", "-o", str(tmp_path / "b")], ROOT
    )
    assert heavy == [] and line.startswith("benchmark: sets ") and "under nowhere" in line and "rrt" in line


def test_first_line_probe_sees_heavy_imports(tmp_path):
    """The probe is not blind: `relook store info` reads an HDF5 store (h5py) before it prints."""
    import h5py

    with h5py.File(tmp_path / "s.h5", "w"):
        pass
    _, heavy = first_line(["store", "info", str(tmp_path / "s.h5")], tmp_path)
    assert "h5py" in heavy


def lazy_imports_without_reason(src: Path) -> list[str]:
    """``file:line`` of every import inside a function (relook outside cli/) whose line, or the line above,
    has no ``# lazy...`` comment saying why it is not at the module's top."""
    import ast

    found = []
    for path in sorted((src / "relook").rglob("*.py")):
        if "cli" in path.relative_to(src / "relook").parts:
            continue
        lines = path.read_text().splitlines()
        for func in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    near = lines[max(node.lineno - 2, 0) : node.end_lineno]
                    if not any("# lazy" in line for line in near):
                        found.append(f"{path.relative_to(src)}:{node.lineno}")
    return sorted(set(found))


def test_lazy_imports_say_why(tmp_path):
    """Imports sit at the module's top unless start-up time or an optional dependency needs them lazy, and
    then a comment says which (``# lazy (start-up): loads torch; ...``, ``# lazy: optional dependency (onnx)``)."""
    assert lazy_imports_without_reason(SRC) == []
    (tmp_path / "relook" / "cli").mkdir(parents=True)  # the check sees a bare one (cli/ is exempt)
    (tmp_path / "relook" / "a.py").write_text(
        "def f():\n    import json\n\n\ndef g():\n    # lazy: ok\n    import os\n"
    )
    (tmp_path / "relook" / "cli" / "b.py").write_text("def f():\n    import json\n")
    assert lazy_imports_without_reason(tmp_path) == ["relook/a.py:2"]
