#!/usr/bin/env bash
# The main job in one command, set-up included:
#   environment (.venv) -> synthetic NYU-layout data -> short training (with validation before
#   and after) -> evaluation with the official protocol -> raw and colormapped PNG predictions.
# Extra arguments go to the training command, e.g. ./demo.sh --num_epochs 5
# Re-running resumes/reuses what is already there; pass --retrain to train again from scratch.
set -euo pipefail
cd "$(dirname "$0")"
./setup_env.sh
PY=.venv/bin/python
export TF_CPP_MIN_LOG_LEVEL=2

echo "== 1/3 synthetic NYU-layout data (demo_data/nyu)"
if [ ! -f demo_data/nyu/nyudepthv2_test_files_with_gt.txt ]; then
  "$PY" -m tools.synthetic_data --dataset nyu --output demo_data/nyu --num_train 80 --num_test 8 --seed 0
fi

echo "== 2/3 training (models/bts_synthetic_nyu; TensorBoard: .venv/bin/tensorboard --logdir models/bts_synthetic_nyu/summaries)"
"$PY" bts_main.py arguments_train_synthetic.txt "$@"

echo "== 3/3 evaluation and predictions (result_bts_synthetic_nyu/)"
# --overwrite: a rerun replaces the predictions of the previous one (bts_test.py refuses otherwise)
"$PY" bts_test.py arguments_test_synthetic.txt --checkpoint_path models/bts_synthetic_nyu/model.keras \
  --save_png --save_cmap --overwrite
echo "done: raw uint16 PNGs (mm) and colormapped PNGs are in result_bts_synthetic_nyu/"
