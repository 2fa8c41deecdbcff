#!/usr/bin/env bash
# lm-evaluation-harness's own numbers for a gda run, offline:
#   scripts/lm-eval.sh RUN_DIR TASK_FILE...
# TASK_FILE is NAME=PATH (as `gda eval --suite bench --tasks`) or a directory
# of NAME.jsonl files. The run is exported with `gda export --format hf`; each
# task gets a YAML that `include`s lm-eval's own config for hellaswag, piqa,
# arc_easy, arc_challenge, winogrande or lambada_openai and overrides only
# the dataset (the local JSONL file, one `test` split); any other name gets
# a config for gda's generic format (context, choices, gold). lm_eval then
# scores them zero-shot on the CPU in fp32 and writes its results and
# per-item samples (--log_samples) under the output directory.
# Environment:
#   GDA_LM_EVAL_OUT    output directory (default RUN_DIR/eval/lm-eval)
#   GDA_LM_EVAL_LIMIT  items per task (lm_eval --limit; default all)
#   GDA_LM_EVAL_BATCH  lm_eval --batch_size (default 16)
#   GDA_LM_EVAL_EXPORT an existing export to score instead of exporting again
#   GDA_THREADS        CPU threads for torch (default 1)
#   GDA_LM_EVAL_TIMES  a file to get "AFTER_LOAD_S EVALUATE_S": seconds from
#                      the model built to the evaluation's end, and of the
#                      evaluation loop alone (scripts/lm_eval_timed.py)
# The venv (transformers + lm-eval[hf], reusing gda's torch) comes from
# scripts/hf-venv.sh. Nothing is downloaded at run time.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/env.sh"
if [ $# -lt 2 ]; then
  echo "usage: scripts/lm-eval.sh RUN_DIR TASK_FILE... (TASK_FILE: NAME=PATH or a directory of NAME.jsonl)" >&2
  exit 2
fi
run=$1
shift
[ -f "$run/spec.toml" ] || { echo "lm-eval.sh: $run is not a gda run directory (no spec.toml)" >&2; exit 2; }
gda=${GDA_BIN:-$GDA_ROOT/target/release/gda}
[ -x "$gda" ] || (cd "$GDA_ROOT" && cargo build --release)
venv=$("$here/hf-venv.sh" | tail -1)
out=${GDA_LM_EVAL_OUT:-$run/eval/lm-eval}
threads=${GDA_THREADS:-1}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gda-lm-eval.XXXXXX")
trap 'rm -rf "$work"' EXIT

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=$GDA_CACHE/hf-home
export HF_DATASETS_CACHE=$work/datasets OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads TOKENIZERS_PARALLELISM=false

export_dir=${GDA_LM_EVAL_EXPORT:-}
if [ -z "$export_dir" ]; then
  export_dir=$work/export
  echo "lm-eval.sh: exporting $run to $export_dir" >&2
  "$gda" export "$run" --format hf --out "$export_dir" >&2
fi

# The task files: NAME=PATH, or every NAME.jsonl of a directory.
names=() files=()
for t in "$@"; do
  if [[ "$t" == *=* ]]; then
    names+=("${t%%=*}") files+=("$(realpath "${t#*=}")")
  elif [ -d "$t" ]; then
    for f in "$t"/*.jsonl; do
      [ -f "$f" ] || continue
      b=$(basename "$f")
      names+=("${b%.jsonl}") files+=("$(realpath "$f")")
    done
  else
    echo "lm-eval.sh: $t: allowed: NAME=PATH or a directory of NAME.jsonl files" >&2
    exit 2
  fi
done
[ ${#names[@]} -gt 0 ] || { echo "lm-eval.sh: no task files" >&2; exit 2; }

lm_tasks=$("$venv/bin/python" -c 'import lm_eval, os; print(os.path.join(os.path.dirname(lm_eval.__file__), "tasks"))')
mkdir -p "$work/tasks"
list=()
for i in "${!names[@]}"; do
  name=${names[$i]} file=${files[$i]}
  case "$name" in
    hellaswag) inc=hellaswag/hellaswag.yaml ;;
    piqa) inc=piqa/piqa.yaml ;;
    arc_easy) inc=arc/arc_easy.yaml ;;
    arc_challenge) inc=arc/arc_challenge.yaml ;;
    winogrande) inc=winogrande/default.yaml ;;
    lambada | lambada_openai) inc=lambada/lambada_openai.yaml ;;
    *) inc= ;;
  esac
  # Named gda_<name> so no built-in task of the same name is shadowed.
  y=$work/tasks/gda_$name.yaml
  if [ -n "$inc" ]; then
    # lm-eval's config as it is; only where the documents come from changes.
    cat >"$y" <<EOF
include: "$lm_tasks/$inc"
task: gda_$name
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    test: "$file"
training_split: null
validation_split: null
test_split: test
fewshot_split: null
EOF
  else
    # gda's generic format: context, choices, gold (docs/bench.md).
    cat >"$y" <<EOF
task: gda_$name
dataset_path: json
dataset_kwargs:
  data_files:
    test: "$file"
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
EOF
  fi
  list+=("gda_$name")
done
cp "$work"/tasks/*.yaml "$out/"

# prefix_token_id: lm-eval decodes its prefix token (BOS, else EOS) for every
# string it encodes, and gda's byte-level tokenizer has neither. The prefix
# only stands in for an empty context, which gda's task formats refuse.
args=(run --model hf
  --model_args "pretrained=$export_dir,trust_remote_code=True,dtype=float32,prefix_token_id=0"
  --tasks "$(IFS=,; echo "${list[*]}")" --include_path "$work/tasks"
  --device cpu --batch_size "${GDA_LM_EVAL_BATCH:-16}" --num_fewshot 0
  --output_path "$out" --log_samples)
[ -n "${GDA_LM_EVAL_LIMIT:-}" ] && args+=(--limit "$GDA_LM_EVAL_LIMIT")
echo "lm-eval.sh: lm_eval ${args[*]}" >&2
if [ -n "${GDA_LM_EVAL_TIMES:-}" ]; then
  "$venv/bin/python" "$here/lm_eval_timed.py" "$GDA_LM_EVAL_TIMES" "${args[@]}"
else
  "$venv/bin/lm_eval" "${args[@]}"
fi
echo "lm-eval.sh: results and per-item samples under $out" >&2
