"""lm_eval's own command line, timed after its model is built:
    python lm_eval_timed.py TIMES_FILE LM_EVAL_ARGS...
writes "AFTER_LOAD_S EVALUATE_S" to TIMES_FILE: seconds from the end of the
HF model's construction to the end of lm_eval's evaluation loop (task
documents, requests, tokenization, the forwards, the metrics), and of that
loop alone. What lm_eval does is unchanged; scripts/lm-eval.sh runs this
when GDA_LM_EVAL_TIMES is set (scripts/bench_eval.sh)."""
import sys
import time

import lm_eval.evaluator as evaluator
from lm_eval.__main__ import cli_evaluate
from lm_eval.models.huggingface import HFLM

times_file, args = sys.argv[1], sys.argv[2:]
loaded = []
build, evaluate = HFLM.__init__, evaluator.evaluate


def timed_build(self, *a, **k):
    build(self, *a, **k)
    loaded.append(time.perf_counter())


def timed_evaluate(*a, **k):
    start = time.perf_counter()
    out = evaluate(*a, **k)
    end = time.perf_counter()
    with open(times_file, "w") as f:
        f.write(f"{end - (loaded[-1] if loaded else start):.3f} {end - start:.3f}\n")
    return out


HFLM.__init__ = timed_build
# simple_evaluate looks `evaluate` up in its module at call time.
evaluator.evaluate = timed_evaluate
sys.argv = ["lm_eval"] + args
sys.exit(cli_evaluate())
