import cv2

from relook.cli import main
from relook.geometry.robust import read_pseudo_gt
from relook.geometry.scene import render_two_views


def test_pseudo_gt_cli(tmp_path, capsys):
    a, b, _, _ = render_two_views(seed=2, delta_deg=20)
    (tmp_path / "im").mkdir()
    cv2.imwrite(str(tmp_path / "im" / "a.png"), a[..., ::-1])
    cv2.imwrite(str(tmp_path / "im" / "b.png"), b[..., ::-1])
    (tmp_path / "pairs.txt").write_text("a.png b.png\nb.png a.png\n")
    out = tmp_path / "pgt.h5"
    args = ["geometry", "pseudo-gt", str(tmp_path / "pairs.txt"), "--image-dir", str(tmp_path / "im"), "-o", str(out),
            "--no-progress"]
    assert main(args) == 0
    assert "2 pairs, 2 reliable" in capsys.readouterr().out
    assert len(read_pseudo_gt(out)) == 2
    assert main(args) == 0  # resume: nothing to do
    assert main(["geometry", "pseudo-gt", str(tmp_path / "nope.txt"), "--image-dir", ".", "-o", str(out)]) == 2
