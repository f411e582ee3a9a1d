"""The shortlist depth and the reranker depth: each default stated once (``relook.experiment.DEFAULTS``
for the shortlist, ``relook.rerank.base.DEFAULTS`` for every reranker) and validated once, so a null, zero
or negative depth is one line ``error: ...`` naming the key and exit 2, before anything is written."""

import re
from pathlib import Path

import pytest

from relook.cli import main
from relook.errors import ConfigError
from relook.experiment import DEFAULTS, load_config
from relook.rerank import create_reranker, list_rerankers
from relook.rerank.base import DEFAULTS as RERANK_DEFAULTS
from relook.rerank.base import RERANKERS

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.yaml")

CASES = [  # (argv after the command's config options, words the one-line message must hold)
    (["search", "-s", "shortlist.k=null"], ["shortlist.k", ">= 1", "None"]),
    (["search", "-s", "shortlist.k=~"], ["shortlist.k", "None"]),
    (["search", "-s", "shortlist.k=0"], ["shortlist.k", ">= 1"]),
    (["search", "-s", "shortlist.k=-3"], ["shortlist.k"]),
    (["search", "-s", "shortlist.k=2.5"], ["shortlist.k", "integer"]),
    (["search", "-s", "shortlist.k=true"], ["shortlist.k", "integer"]),
    (["search", "-s", "shortlist.index=null"], ["shortlist.index", "None"]),
    (["rerank", "-c", DEMO, "-s", "rerankers.0.top_k=null"], ["rerankers[0]", "top_k", ">= 1", "None"]),
    (["rerank", "-c", DEMO, "-s", "rerankers.0.top_k=0"], ["rerankers[0]", "top_k", ">= 1"]),
    (["rerank", "-c", DEMO, "-s", "rerankers.0.top_k=-2"], ["rerankers[0]", "top_k"]),
    (["run", "-c", DEMO, "-s", "shortlist.k=null"], ["shortlist.k"]),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[" ".join(c[0][:1] + c[0][-1:]) for c in CASES])
def test_bad_input_depth_one_line_exit_2(tmp_path, capsys, argv, words):
    assert main([*argv, "-s", f"out={tmp_path}/out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()  # nothing written before the error


def test_bad_input_depth_in_a_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("shortlist: {k: null}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: shortlist\.k must be an integer >= 1, got None"):
        load_config([path])


@pytest.mark.parametrize("name", ["gv", "aqe", "asmk", "ot"])
@pytest.mark.parametrize("top_k", [None, 0, -1, 1.5])
def test_bad_input_reranker_top_k(name, top_k):
    """The library path (``create_reranker``) refuses the same depths the config composer does."""
    with pytest.raises(ConfigError, match="top_k"):
        create_reranker(name, top_k=top_k)


def test_defaults_hold_everywhere():
    """Every built-in reranker starts from the one ``top_k``; the composed config from the one ``k``."""
    assert RERANK_DEFAULTS == {"top_k": 100} and DEFAULTS["shortlist"] == {"k": 1000, "index": "flat", "ivfpq": {}}
    for name in ("gv", "aqe", "asmk", "ot", "rrt"):  # built-in (tests register toy ones with their own top_k)
        assert name in list_rerankers()
        default = RERANKERS.get(name).default_conf
        assert default.get("top_k", RERANK_DEFAULTS["top_k"]) == RERANK_DEFAULTS["top_k"], name
    assert create_reranker("aqe").conf["top_k"] == RERANK_DEFAULTS["top_k"]
    assert load_config()["shortlist"] == DEFAULTS["shortlist"]


def test_defaults_stated_once():
    """No module restates the numbers: a literal depth next to ``top_k`` / the shortlist's ``k`` appears only
    in the two tables (training's own ``top_k``, the neighbours negatives come from, is another setting)."""
    pattern = re.compile(
        r"""(["']top_k["']\s*:\s*\d|top_k\s*:\s*int\s*=\s*\d|get\(\s*["'](top_k|k)["']\s*,\s*\d|["']k["']\s*:\s*\d)"""
    )
    allowed = {"relook/rerank/base.py", "relook/experiment.py", "relook/local_defaults.py"}  # + gv's per device
    found = []
    for path in sorted((ROOT / "src" / "relook").rglob("*.py")):
        rel = path.relative_to(ROOT / "src").as_posix()
        if rel in allowed or rel.startswith(("relook/train/", "relook/cli/rrt.py")):
            continue
        found += [
            f"{rel}:{i}: {line.strip()}"
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)
        ]
    assert not found, "depth defaults restated outside their DEFAULTS table:\n" + "\n".join(found)
