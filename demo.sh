#!/usr/bin/env bash
# The main job in one command, set-up included:
#   environment (.venv) -> synthetic NYU-layout rooms -> short training from scratch (validation
#   before and after) -> evaluation with the official protocol -> raw and colormapped PNGs
#   -> with the official NYU model fetched (./init_bts_pretrained.sh nyu): real photos too.
# Extra arguments go to the training command, e.g. ./demo.sh --num_steps 500
# Re-running reuses the data and the finished run; pass --retrain to train again from scratch.
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh
PY=.venv/bin/python

DATA=demo_data/nyu
# The data's recipe: regenerated when it changes (an older demo_data/ is replaced, not mixed in).
RECIPE="--dataset nyu --output $DATA --num_train 240 --num_test 8 --height 144 --width 192 --seed 0"
echo "== 1/3 synthetic NYU-layout rooms ($DATA)"
if [ "$(cat "$DATA/.recipe" 2>/dev/null)" != "$RECIPE" ]; then
  rm -rf "$DATA"
  # shellcheck disable=SC2086  # RECIPE is a list of flags
  "$PY" -m tools.synthetic_data $RECIPE
  echo "$RECIPE" > "$DATA/.recipe"
fi

echo "== 2/3 training (models/bts_synthetic_nyu; TensorBoard: .venv/bin/tensorboard --logdir models/bts_synthetic_nyu/summaries)"
"$PY" bts_main.py arguments_train_synthetic.txt "$@"

echo "== 3/3 evaluation and predictions (result_bts_synthetic_nyu/)"
# --overwrite: a rerun replaces the predictions of the previous one (bts_test.py refuses otherwise)
"$PY" bts_test.py arguments_test_synthetic.txt --checkpoint_path models/bts_synthetic_nyu/model.keras \
  --save_png --save_cmap --save_point_cloud --overwrite
echo "done: raw uint16 PNGs (mm), colormapped PNGs and point clouds are in result_bts_synthetic_nyu/"

OFFICIAL="${BTS_MODELS_DIR:-models}/bts_nyu_v2_pytorch_densenet161/model.keras"
if [ ! -f "$OFFICIAL" ]; then
  echo "real photos: skipped, no official model at $OFFICIAL (fetch it once with ./init_bts_pretrained.sh nyu)"
  exit 0
fi
echo "== real photos with the official NYU model ($OFFICIAL -> result_demo_photos/)"
if ! "$PY" -c "import skimage" 2>/dev/null; then
  echo "[setup] installing requirements-demo.txt (scikit-image ships the sample photos)"
  "$PY" -m pip install --quiet --disable-pip-version-check -r requirements-demo.txt
fi
"$PY" -m demo.samples --output demo_data/photos
"$PY" bts_test.py --dataset nyu --checkpoint_path "$OFFICIAL" --image_path demo_data/photos \
  --save_cmap --save_point_cloud --output_directory result_demo_photos --overwrite
echo "done: colormapped PNGs and point clouds of the photos are in result_demo_photos/"
