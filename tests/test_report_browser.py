"""The report as a person sees it: ``report.html`` of a tiny run opened in headless Chromium (Debian's
``chromium``; ``make browser``, a dependency of ``make test``, installs it). A copy of the page with a
small script records, after the load event, every image's ``complete && naturalWidth > 0``, the
sections present and every figure whose caption overflows it (sticks out left or right, or scrolls)
into the DOM, which ``--dump-dom`` hands back; a screenshot of the first screen must show more than a
blank page. The query page of the same run is checked the same way, with a long query file name.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relook.cli import main
from tests.shared_data import unavailable
from tests.test_pipeline import toy  # noqa: F401  (fixture: tiny synthetic run; registers the toy parts)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
REQUIRED = ["run", "results", "timing", "curves", "examples", "cases", "internals"]
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = document.createElement('pre');
  out.id = 'relook-probe';
  out.textContent = JSON.stringify({
    images: imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
    sections: [...document.querySelectorAll('section')].map(s => s.id),
    captions: [...document.querySelectorAll('figure')].map(f => !!f.querySelector('figcaption')),
    overflow: [...document.querySelectorAll('figure')].flatMap(f => {
      const c = f.querySelector('figcaption');
      if (!c) return [];
      const fr = f.getBoundingClientRect(), cr = c.getBoundingClientRect();
      const out = cr.left < fr.left - 1 || cr.right > fr.right + 1 || c.scrollWidth > c.clientWidth + 1;
      return out ? [c.textContent.slice(0, 80)] : [];
    }),
  });
  document.body.appendChild(out);
});
</script>"""


def chromium(args: list[str], profile: Path) -> str:
    if not Path(CHROMIUM).exists():
        unavailable(f"headless Chromium missing at {CHROMIUM}: `make browser` installs it when run as root (apt-get)")
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def probe(report: Path, profile: Path) -> dict:
    """Open a probing copy of ``report`` (same folder, so relative image paths hold) and read its record."""
    page = report.with_name("_probe.html")
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(["--virtual-time-budget=10000", "--dump-dom", page.as_uri()], profile)
    found = re.search(r"<pre id=\"relook-probe\">(.*?)</pre>", dom, re.S)
    assert found, "the probe script did not run: " + dom[-500:]
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


@pytest.mark.slow  # ~40 s on 2 cores (a tiny run, then Chromium twice)
def test_report_in_browser(toy, tmp_path):
    """A run with a toy reranker and OT on tiny ResNet tokens ends with a report that loads completely."""
    cfg, out = toy
    tokens = "{name: vit_tokens, backbone: resnet50, pretrained: false, image_size: 32, model_kwargs: {layers: [1, 1, 1, 1]}}"
    assert (
        main(
            [
                "run",
                "-c",
                str(cfg),
                "--quiet",
                "-s",
                f"extractors=[{{name: toy_thumb}}, {tokens}]",
                "-s",
                "global=toy_thumb",
                "-s",
                "rerankers=[{name: toy_reverse}, {name: ot, features: vit_tokens}]",
            ]
        )
        == 0
    )
    report = out / "report.html"
    seen = probe(report, tmp_path / "profile")
    assert seen["images"] and all(ok for _, ok in seen["images"]), seen["images"]
    srcs = {src for src, _ in seen["images"]}
    for fig in ("pr_curves", "recall_map_at_k", "topk_global_only", "topk_toy_reverse", "cases_toy_reverse", "ot_ot"):
        assert f"figures/{fig}.png" in srcs
    assert [s for s in REQUIRED if s not in seen["sections"]] == []
    assert all(seen["captions"])
    assert seen["overflow"] == []
    # the probe sees a missing figure as a broken image
    (out / "figures/pr_curves.png").unlink()
    broken = [src for src, ok in probe(report, tmp_path / "profile")["images"] if not ok]
    assert broken == ["figures/pr_curves.png"]
    # first screen: title, notes and header drawn (far from a blank page)
    shot = tmp_path / "first_screen.png"
    chromium([f"--screenshot={shot}", "--window-size=1280,900", report.as_uri()], tmp_path / "profile")
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (900, 1280) and pixels.std() > 10 and (pixels < 100).mean() > 0.005


def test_query_page_in_browser(toy, tmp_path):
    """``relook query`` page: every thumbnail loads, no caption overflows its card (a file name of 70
    characters without a space wraps inside it), the verdict and the run's provenance are there."""
    cfg, out = toy
    assert main(["run", "-c", str(cfg), "--quiet", "--no-report"]) == 0
    image = tmp_path / ("a_very_long_query_file_name_with_no_space_to_break_at_" + "x" * 16 + ".png")
    Image.open(sorted((tmp_path / "data").glob("*.png"))[0]).save(image)
    page = tmp_path / "query.html"
    assert main(["query", str(image), "--run", str(out), "--method", "toy_reverse", "--html", str(page)]) == 0
    seen = probe(page, tmp_path / "profile")
    assert len(seen["images"]) == 11 and all(ok for _, ok in seen["images"])
    assert seen["overflow"] == [] and all(seen["captions"])
    assert "provenance" in seen["sections"]
    text = page.read_text()
    for words in (
        "confident match",
        "Match thresholds",
        "Provenance of every method",
        "This query ran with",
        "relook ",
    ):
        assert words in text, words
