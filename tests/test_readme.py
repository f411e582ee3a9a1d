"""The README's code blocks marked ``<!-- runnable ... -->`` run as written, and the reranker the README
teaches how to add passes the contract every registered reranker passes."""

import re
from pathlib import Path

from relook.rerank import create_reranker, list_rerankers
from tests.rerank.test_contract import check_empty, check_permutation_no_nan_seeded, make_stores
from tests.test_recipes import bash_commands, check_relook_command, relook_argv

README = Path(__file__).resolve().parents[1] / "README.md"


def runnable_blocks(text: str) -> list[str]:
    """The fenced python blocks that directly follow a ``<!-- runnable`` comment line."""
    return re.findall(r"<!-- runnable[^\n]*-->\n```python\n(.*?)\n```", text, flags=re.S)


def test_blocks_found():
    assert len(runnable_blocks(README.read_text())) >= 1


def test_runnable_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(list_rerankers())
    for block in runnable_blocks(README.read_text()):
        exec(compile(block, str(README), "exec"), {"__name__": "readme_block"})
    added = set(list_rerankers()) - before
    assert added == {"mnn_share"}
    qs, gs, shortlist = stores = make_stores(tmp_path)
    try:

        def create(name, **conf):
            return create_reranker(name, **conf)

        check_permutation_no_nan_seeded(create, "mnn_share", stores)
        check_empty(create, "mnn_share", stores)
        out = create_reranker("mnn_share", weight=5.0).rerank_shortlist(shortlist, qs, gs, progress=False)
        for q in range(3):  # the planted pairs share half their locals: mutual neighbours find them
            assert set(out.indices[q, :2].tolist()) == {q, q + 3}
    finally:
        qs.close()
        gs.close()


def pooled_table(text: str, after: str) -> str:
    """The first Markdown table (consecutive ``|`` lines) after the line containing ``after``."""
    lines = text[text.index(after) :].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return "\n".join(rows)


def test_results_section_is_the_benchmarks():
    """The README's results table is the committed `relook benchmark` run's pooled table, row for row: rerun
    the benchmark and the README must follow (copy the pooled table of results/benchmark/results.md)."""
    committed = pooled_table((README.parent / "results/benchmark/results.md").read_text(), "## pooled")
    shown = pooled_table(README.read_text(), "<!-- copy of the pooled table of results/benchmark/results.md")
    assert shown.count("\n") >= 3
    assert shown == committed


def test_command_lines_parse():
    """Every ``relook`` line of the README's ``bash`` blocks parses against the command line as it is now
    (sub-command, options, arguments; nothing runs) and the configs under ``configs/`` it names load with its
    ``-s`` overrides (the same check as the recipes under docs/)."""
    commands = [c for c in bash_commands(README.read_text()) if relook_argv(c)]
    assert len(commands) >= 30
    for command in commands:
        check_relook_command(command, str(README))
