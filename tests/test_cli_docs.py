"""Documentation that must run as written: every command's ``Example:`` lines parse against the command
they name (options, types, required arguments), the ``relook store`` examples run on stores made here,
every config-driven stage has ``--quiet``, and the README's "Library at a glance" snippet runs on a tiny
run's output."""

import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import typer

from relook.cli import app, main
from relook.store import FeatureStore
from relook.types import ImageFeatures
from tests.test_pipeline import toy  # noqa: F401  (fixture: tiny synthetic run; registers the toy parts)

ROOT = Path(__file__).resolve().parents[1]
STARTS = ("relook ", "torchrun ")


def commands(group=None, path=("relook",)):
    """(command path, click command) of every leaf command of the app."""
    group = group or typer.main.get_command(app)
    for name, cmd in sorted(group.commands.items()):
        if hasattr(cmd, "commands"):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def examples(help_text: str) -> list[str]:
    """The example command lines of a help text: the ``Example:`` paragraph, one command per line starting
    with ``relook``/``torchrun``; a line starting otherwise continues the previous command."""
    if "Example:" not in help_text:
        return []
    block = help_text.split("Example:", 1)[1].split("\n\n", 1)[0]
    out: list[str] = []
    for line in block.splitlines():
        line = line.strip()
        if line.startswith(STARTS):
            out.append(line)
        elif line and out:
            out[-1] += " " + line
    return out


def argv_of(example: str) -> list[str]:
    """``relook a b --x`` -> ``[a, b, --x]``; ``torchrun ... -m relook.cli a b`` -> ``[a, b]`` (comments dropped)."""
    words = shlex.split(example, comments=True)
    if words[0] == "torchrun":
        i = words.index("relook.cli")
        return words[i + 1 :]
    assert words[0] == "relook", example
    return words[1:]


def parse(argv: list[str]):
    """Resolve the command path and let click parse the rest, as a run would (nothing is invoked)."""
    import click

    cmd = typer.main.get_command(app)
    ctx = click.Context(cmd, info_name="relook")
    while hasattr(cmd, "commands"):
        name, argv = argv[0], argv[1:]
        assert name in cmd.commands, f"no command {name!r} under {ctx.command_path}"
        cmd = cmd.commands[name]
        ctx = click.Context(cmd, info_name=name, parent=ctx)
    return cmd, cmd.make_context(ctx.info_name, list(argv), parent=ctx.parent)


ALL = [(" ".join(path), cmd) for path, cmd in commands()]


@pytest.mark.parametrize("name,cmd", ALL, ids=[n for n, _ in ALL])
def test_help_examples_parse(name, cmd):
    found = examples(cmd.help or "")
    assert found, f"`{name} --help` shows no example"
    for example in found:
        argv = argv_of(example)
        assert " ".join(["relook", *argv]).startswith(name), f"{name}: example runs another command: {example}"
        parse(argv)  # raises click's usage error on an unknown option, a bad value or a missing argument


def test_parse_rejects_bad_examples():
    """The parse check is not a formality: what a user could not run fails it."""
    from relook.cli import _click_classes

    for bad in (
        "relook search -c a.yaml --nope",
        "relook store search q.h5 -o s.npz",
        "relook store search q.h5 db.h5 -o s.npz --k x",
    ):
        with pytest.raises(_click_classes("UsageError")):
            parse(argv_of(bad))
    assert examples("Do it.\n\nExample: relook a b\n  --c d   # why\n    relook e\n\nMore.") == [
        "relook a b --c d   # why",
        "relook e",
    ]


def test_quiet_on_every_stage():
    stages = ["extract", "index", "search", "rerank", "evaluate", "run", "report"]
    have = {" ".join(path[1:]): {o for p in cmd.params for o in p.opts} for path, cmd in commands()}
    assert [s for s in stages if "--quiet" not in have[s]] == []


def test_store_examples_run(tmp_path, monkeypatch, capsys):
    """The ``relook store`` examples, run word for word in a folder holding the stores they name."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)

    def store(path, ids):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with FeatureStore(path, "w", meta={"extractor": "toy"}) as s:
            for i in ids:
                v = rng.normal(size=8).astype(np.float32)
                s.write(ImageFeatures(i, global_desc=v / np.linalg.norm(v)))

    store("q.h5", [f"q{i}" for i in range(3)])
    store("db.h5", [f"g{i}" for i in range(6)])
    store("feats.rank0.h5", ["a", "b"])
    store("feats.rank1.h5", ["c"])
    store("runs/demo/test/features/cnn_local/gallery.h5", ["a", "b"])
    ran = 0
    for path, cmd in commands():
        if path[1] != "store":
            continue
        for example in examples(cmd.help or ""):
            assert main(argv_of(example)) == 0, example
            ran += 1
    assert ran >= 4 and Path("shortlist.npz").exists() and Path("feats.h5").exists()
    assert "runs/demo/test/features/cnn_local/gallery.h5: 2 images" in capsys.readouterr().out


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Library at a glance", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs(toy, tmp_path, monkeypatch, capsys):
    """The snippet as written, from a folder where ``runs/demo/test`` is a finished tiny run."""
    cfg, _ = toy
    monkeypatch.chdir(tmp_path)
    assert main(["run", "-c", str(cfg), "-s", "out=runs/demo/test", "--quiet", "--no-report"]) == 0
    capsys.readouterr()
    exec(compile(readme_snippet(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    recall, mean_ap = printed.rsplit("}", 1)
    assert "1: 1.0" in recall and float(mean_ap) == 1.0  # colour clusters: every query finds its own
    assert Path("shortlist.npz").exists() and not os.path.exists("queries.h5")
