#!/usr/bin/env bash
# DToP proof on real features: the lite0_vit hybrid (pretrained EfficientNet-Lite0 stem from
# the wheel, frozen, + a small seeded ViT) trained with ArcFace and group-size sampling on the warped-photo
# benchmark's TRAIN photos, evaluated on its TEST photos beside the plain GeM of the same stem and the untrained
# model (seed 0). Results: experiments/dtop_real_warp.md.
#   WARP=/path/to/warp bash experiments/dtop_real_warp.sh [OUT=runs/dtop_real_warp]
# WARP is made by: relook datasets warp ../shared/data/photos/BSDS500 WARP --views 4 --seed 0 --size 320 \
#                  --test-fraction 0.3   (as experiments/global_head_warp.sh)
set -euo pipefail
OUT=${OUT:-runs/dtop_real_warp}
WARP=${WARP:?set WARP to the warped-photo benchmark}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
$PY experiments/dtop_real_warp.py --warp "$WARP" --out "$OUT" --rows gem,untrained
# the recorded table used this run's checkpoint after epoch 4 of 8 (stopped for time): see the .md
$PY -m relook.cli train dtop -c configs/train/dtop-real-warp.yaml -s dataset.name=warp -s dataset.root="$WARP" \
    -s dataset.split=train -o "$OUT/train"
$PY experiments/dtop_real_warp.py --warp "$WARP" --out "$OUT" --rows trained \
    --checkpoint "$OUT/train/checkpoint.pt" | tee "$OUT/table.txt"
