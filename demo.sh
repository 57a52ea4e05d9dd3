#!/usr/bin/env bash
# The offline demo until `ctcforge demo` exists: set up, synthesise Armenian speech with
# espeak-ng, stamp a repo on the `tiny` architecture, train it with the repo's own script,
# evaluate it with the repo's own eval.py, and rebuild its card. Every step reruns from
# scratch in demo-output/ (about 5 minutes on 2 cores after set-up).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./setup.sh
LANGUAGE=${DEMO_LANGUAGE:-hy-AM}
STEPS=${DEMO_STEPS:-300}
OUT=$PWD/demo-output
PY=$PWD/.venv/bin/python
rm -rf "$OUT" && mkdir -p "$OUT"
.venv/bin/ctcforge synth "$LANGUAGE" --output-dir "$OUT/cv" --num-clips 400 --seed 0
.venv/bin/ctcforge new "$LANGUAGE" --base-model tiny --dataset "$OUT/cv" --output-dir "$OUT/repo"
cd "$OUT/repo"
echo "demo: training $STEPS steps on CPU (log: $OUT/repo/train.log)"
"$PY" run_speech_recognition_ctc.py --model_name_or_path ./ --dataset_name "$OUT/cv" \
    --dataset_config_name "$LANGUAGE" --train_split_name train --eval_split_name dev \
    --output_dir ./ --max_steps "$STEPS" --per_device_train_batch_size 16 --learning_rate 2e-3 \
    --warmup_steps 30 --do_train --do_eval --use_cpu --report_to none --logging_steps 25 \
    --eval_strategy steps --eval_steps 100 --save_steps 100 --save_total_limit 1 > train.log 2>&1
"$PY" eval.py --model_id ./ --dataset "$OUT/cv" --config "$LANGUAGE" --split test --log_outputs \
    --decoder greedy --output_dir eval/greedy
"$PY" -m ctcforge card .
echo "demo: results in $OUT/repo/eval/greedy, card in $OUT/repo/README.md"
cat eval/greedy/*_eval_results.txt; echo
