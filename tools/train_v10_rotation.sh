#!/usr/bin/env bash
# v1.0's two-stage recipe (README "v1.0") with the training-only orientation task in both
# stages: the model-1.1 candidate measured on 2026-12-04. Resumable: run it again after an
# interruption. Usage: tools/train_v10_rotation.sh [DATA_ROOT] [WORK]
# (from a checkout with its venv active; about 55 minutes on 2 cores with bf16 AMX).
set -euo pipefail
ROOT=${1:-../shared/data}
WORK=${2:-runs/v10rot}
D=$WORK/data224
ROT=(--aux-rotation 0.5 --aux-rotation-share 0.25)
resume() { [ -f "$1/checkpoint.pth" ] && echo --resume auto || true; }
if [ ! -f "$D/prepared.json" ]; then
  python -m training prepare --folder "$ROOT/kermany/train" --manifest "$ROOT/nih/labels.csv" \
    --out "$D" --image-size 224 --contract pv-input-1 --seed 0
fi
if [ ! -f "$WORK/stage1_model/metadata.json" ]; then
  # shellcheck disable=SC2046
  python -m training train --data "$D" --output-dir "$WORK/stage1" --epochs 12 --batch-size 32 \
    --opt adamw --lr 1e-3 --weight-decay 0.05 --lr-scheduler cosine --lr-warmup-epochs 1 \
    --balance source --balance-power 0.5 --amp --threads 2 --seed 0 --print-freq 10 \
    "${ROT[@]}" $(resume "$WORK/stage1")
  python -m training export --run "$WORK/stage1" --out "$WORK/stage1_model" --threads 2 \
    --n-boot 0 --skip-test
fi
if [ ! -f "$WORK/model/metadata.json" ]; then
  # shellcheck disable=SC2046
  python -m training train --data "$D" --output-dir "$WORK/stage2" \
    --init "$WORK/stage1_model/model.safetensors" --epochs 6 --samples-per-epoch 2000 \
    --batch-size 32 --opt adamw --lr 1e-4 --weight-decay 0.05 --lr-scheduler cosine \
    --lr-warmup-epochs 0.5 --balance source --balance-power 0 --amp --threads 2 --seed 0 \
    --select-metric source-mean-auroc --print-freq 20 "${ROT[@]}" $(resume "$WORK/stage2")
  [ -d "$WORK/compare-model" ] || cp -r resources/model "$WORK/compare-model"
  python -m training export --run "$WORK/stage2" --out "$WORK/model" --threads 2 \
    --extra-folder "kermany_val=$ROOT/kermany/val" --plots-dir "$WORK/plots" \
    --compare "$WORK/compare-model" --compare-data "$D"
fi
echo "-> $WORK/model (held-out comparison with the earlier model in its metadata.json)"
