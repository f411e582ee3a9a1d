"""The recipes under ``docs/`` start as written: every ``relook`` command line of their ``bash`` blocks parses
against the command line as it is now (sub-command, options, arguments; nothing runs), the experiment configs
they name load and validate with their ``-s`` overrides, every script they call exists, and every script
under ``scripts/`` parses its arguments (``--help``). The recipes themselves run for minutes to hours on real
data; their pages say which command printed which number. Write-ups speak of the project and the papers,
not of its issue tracker, and ``experiments/`` holds no lab notes."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from relook.cli import app
from relook.experiment import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").rglob("*.md"))
SCRIPTS = sorted((ROOT / "scripts").rglob("*.py"))
STAGES = {"extract", "index", "search", "rerank", "evaluate", "report", "run"}  # commands reading experiment configs
OPERATORS = {"&&", "||", ";", "|", "&"}


def bash_commands(text: str) -> list[list[str]]:
    """The simple commands of the fenced ``bash`` blocks of a Markdown text, as argument lists: continuation
    lines joined, comments dropped, split at ``&&``, ``;``, ``|``, leading ``VAR=value`` assignments removed."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for w in [*words, ";"]:
                if w in OPERATORS:
                    while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
                        command.pop(0)
                    if command:
                        out.append(command)
                    command = []
                else:
                    command.append(w)
    return out


def relook_argv(command: list[str]) -> list[str] | None:
    """The arguments after ``relook`` (or ``python -m relook.cli``), or None for another program."""
    if command[0] == "relook":
        return command[1:]
    if command[0].startswith("python") and command[1:3] == ["-m", "relook.cli"]:
        return command[3:]
    return None


def parse_only(argv: list[str]) -> tuple[list[str], dict]:
    """Resolve ``relook ARGV`` to its sub-command and parse its options exactly as the command line would,
    without running it: a misspelt command, an unknown option or an extra argument raises click's usage error."""
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("relook", list(argv))
    path = []
    while hasattr(cmd, "resolve_command"):
        pending = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []), *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, pending)
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return path, ctx.params


def recipe_commands() -> list[tuple[str, list[str]]]:
    return [(f"{p.relative_to(ROOT)}:{' '.join(c)[:60]}", c) for p in DOCS for c in bash_commands(p.read_text())]


def test_recipes_found():
    argvs = [relook_argv(c) for _, c in recipe_commands()]
    assert len([a for a in argvs if a]) >= 20


def test_bash_commands_split():
    text = "```bash\nOMP_NUM_THREADS=1 relook run -c a.yaml \\\n    -s out=x   # note\ncp a b && relook merge\n```\n"
    assert bash_commands(text) == [
        ["relook", "run", "-c", "a.yaml", "-s", "out=x"],
        ["cp", "a", "b"],
        ["relook", "merge"],
    ]


def check_relook_command(command: list[str], where: str) -> None:
    """A ``relook`` command parses, and the configs under ``configs/`` it names load with its ``-s`` overrides
    (an override holding a shell variable is left out); a ``python``/``bash`` line names an existing script."""
    argv = relook_argv(command)
    if argv is None:
        if command[0] in ("python", "bash") and len(command) > 1 and command[1].startswith("scripts/"):
            assert (ROOT / command[1]).is_file(), f"{where}: no script {command[1]}"
        return
    path, params = parse_only(argv)
    if path and path[0] in STAGES and params.get("config"):
        files = [ROOT / f for f in params["config"]]
        overrides = [s for s in params.get("overrides") or [] if "$" not in s]
        load_config([f for f in files if f.is_relative_to(ROOT / "configs")], overrides)


@pytest.mark.parametrize("where,command", recipe_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_recipe_command_parses(where, command):
    check_relook_command(command, where)


def test_parse_only_refuses():
    with pytest.raises(Exception, match="bogus"):
        parse_only(["run", "-c", "configs/demo.yaml", "--bogus", "1"])
    with pytest.raises(Exception, match="trian"):
        parse_only(["trian", "rrt"])
    assert parse_only(["train", "global", "-s", "dataset.name=warp", "-o", "o"])[0] == ["train", "global"]


def test_recipe_configs_load():
    for f in sorted((ROOT / "configs" / "recipes").glob("*.yaml")):
        assert load_config([f])["dataset"]["name"], f


def test_scripts_compile():
    for script in SCRIPTS:
        compile(script.read_text(), str(script), "exec")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_starts(script):
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_write_ups_name_no_development_issue():
    """Write-ups and recipes speak of the project and name the papers by title, not by tracker numbers."""
    files = [ROOT / "README.md", *DOCS, *SCRIPTS, *sorted((ROOT / "configs").rglob("*.yaml"))]
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in files
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if re.search(r"\bissue \d+|\bseed 00\d\b", line, flags=re.I)
    ]
    assert not hits, hits


def test_no_lab_notes_in_experiments():
    """Findings live in docs/findings, recipes in docs/recipes, tools in scripts/: experiments/ is gone."""
    left = sorted(p.name for p in (ROOT / "experiments").glob("*")) if (ROOT / "experiments").exists() else []
    assert not left, left


def test_doc_links_resolve():
    for page in [ROOT / "README.md", *DOCS]:
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"
