"""Usage errors end in one line ``error: ...`` naming the argument and exit code 2; Ctrl-C exits 130."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import relook
from relook.cli import main

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


def _bad_config(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


CASES = [  # (argv, words the message must contain); "{tmp}" is the test's folder
    (["--bogus"], ["--bogus"]),
    (["nosuchcmd"], ["nosuchcmd"]),
    (["store", "info", "--bogus"], ["--bogus", "relook store info --help"]),
    (["store", "search"], ["query_store"]),
    (["store", "search", "q.h5", "g.h5", "-o", "s.npz", "--k", "abc"], ["--k", "integer"]),
    (["store", "search", "q.h5", "g.h5", "-o", "s.npz", "--k", "-3"], ["--k", "greater than or equal to 1"]),
    (["demo", "--num-instances", "-1"], ["--num-instances"]),
    (["datasets", "synthetic", "{tmp}/syn", "--image-size", "big"], ["--image-size"]),
    (["search", "-s", "out={tmp}/out", "-s", "shortlist.k=abc"], ["shortlist.k", "integer", "'abc'"]),
    (["search", "-s", "out={tmp}/out", "-s", "shortlist.k=0"], ["shortlist.k", ">= 1"]),
    (["search", "-s", "out={tmp}/out", "-s", "shortlist.k"], ["shortlist.k", "key.sub=value"]),
    (["search", "-s", "out={tmp}/out", "-s", "shortlist.index=3"], ["shortlist.index", "string"]),
    (["search", "-s", "out={tmp}/out", "-s", "shortlist.k=[1"], ["shortlist.k", "YAML"]),
    (["rerank", "-c", DEMO, "-s", "out={tmp}/out", "-s", "rerankers.0.threshold=abc"], ["threshold", "number", "gv"]),
    (["rerank", "-c", DEMO, "-s", "out={tmp}/out", "-s", "rerankers.0.top_k=-1"], ["top_k", ">= 0"]),
    (["rerank", "-c", DEMO, "-s", "out={tmp}/out", "-s", "rerankers.9.top_k=5"], ["rerankers.9", "index"]),
    (["extract", "-c", DEMO, "-s", "out={tmp}/out", "-s", "extractors.0.pretrained=maybe"], ["pretrained", "boolean"]),
    (
        ["search", "-c", "BADCONF:rerankers: [{name: gv, threshold: abc}]\nout: {tmp}/out\n"],
        ["bad.yaml", "threshold", "number"],
    ),
    (["search", "-c", "BADCONF:shortlist: {k: -4}\nout: {tmp}/out\n"], ["bad.yaml", "shortlist.k"]),
    (["search", "-c", "BADCONF:extractors: [3]\nout: {tmp}/out\n"], ["bad.yaml", "extractors[0]"]),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    argv = [_bad_config(tmp_path, a[len("BADCONF:") :]) if a.startswith("BADCONF:") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out" / "config.yaml").exists()  # nothing saved before the error


def test_bad_input_subprocess():
    """The real entry point: exit 2, one line, no usage block and no traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "relook.cli", "store", "search", "a.h5", "b.h5", "-o", "s.npz", "--k", "abc"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "--k" in out.stderr, out.stderr
    assert "Usage" not in out.stderr and "Traceback" not in out.stderr


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"relook {relook.__version__}"


def test_keyboard_interrupt_in_command(monkeypatch, capsys):
    import relook.datasets.synthetic as synthetic

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate_synthetic", interrupted)
    assert main(["datasets", "synthetic", "unused"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_ctrl_c_exits_130(tmp_path):
    """SIGINT to a long-running command: one line ``interrupted`` and exit code 130 (not 0)."""
    out = tmp_path / "syn"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relook.cli",
            "datasets",
            "synthetic",
            str(out),
            "--num-instances",
            "100000",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the folder appears once the command is running
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err
