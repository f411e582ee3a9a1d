"""``relook.environment``: what it reports is what the machine says (read here independently)."""

import os
import re
import subprocess
from pathlib import Path

import relook
from relook.environment import describe, environment


def test_matches_reference():
    env = environment()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    if model:  # Linux x86: the first "model name" line
        assert env["cpu"] == " ".join(model.group(1).split())
    assert env["cores"] == f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}"
    assert env["relook"] == relook.__version__
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(relook.__file__).parent
    ).stdout.strip()
    assert env["git"].split()[0] == (head or "unknown")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", env["date"])
    assert env["gpu"]  # a name, or "none (CPU only)"
    line = describe(env)
    assert env["cpu"] in line and env["date"] in line and f"relook {relook.__version__}" in line
