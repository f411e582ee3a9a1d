"""Atomic writes: a killed writer's temporary file is cleaned by the next write; a live one's is kept."""

import os
import subprocess
import sys

from relook.io import atomic_path


def test_orphan_temp_files_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".out.json.tmp-{int(dead.stdout)}"  # what kill -9 during a write leaves
    orphan.write_text("half")
    live = tmp_path / f".out.json.tmp-{os.getppid()}"  # a writer still running
    live.write_text("busy")
    with atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("{}")
    assert (tmp_path / "out.json").read_text() == "{}"
    assert not orphan.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name])
