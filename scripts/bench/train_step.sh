#!/usr/bin/env bash
# Training-step speed of the neurofm masked autoencoder, candle vs PyTorch, on this machine's CPU,
# in one invocation: the CPU f32 FMA peak (fma_peak example), then for every preset REPEATS
# interleaved runs of the candle example (crates/neurofm-models/examples/train_step.rs) and its
# PyTorch twin (scripts/bench/train_step.py), then a summary table (windows/s, step time, % of
# the FMA peak, peak RSS).
#
# Usage: scripts/bench/train_step.sh [PRESET ...]          (default: tiny base)
# Environment: BATCH (16), STEPS (timed steps per run, 5), WARMUP (2), REPEATS (3),
#   CHANNELS (16), PATCHES (16) -> CHANNELS*PATCHES tokens per window,
#   ATTN (sdpa | manual, PyTorch attention), BUILD (1; 0 = use the built examples as they are), TORCH_PYTHON (a python with torch; default: the
#   venv scripts/bench/.venv, created on first use), CARGO_TARGET_DIR (default target/),
#   BASELINE_BIN (another train_step binary, e.g. an older build, run interleaved as
#   "candle-baseline" for before/after comparisons).
# Results (one JSON object per run) go to $RESULTS (default target/train_step.jsonl).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(tiny base)
BATCH="${BATCH:-16}"
STEPS="${STEPS:-5}"
WARMUP="${WARMUP:-2}"
REPEATS="${REPEATS:-3}"
CHANNELS="${CHANNELS:-16}"
PATCHES="${PATCHES:-16}"
ATTN="${ATTN:-sdpa}"
target="${CARGO_TARGET_DIR:-$root/target}"
RESULTS="${RESULTS:-$target/train_step.jsonl}"

if [ -z "${TORCH_PYTHON:-}" ]; then
  venv="$root/scripts/bench/.venv"
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    # The small CPU-only wheel when its index is reachable, else PyPI's default wheel.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --index-url https://download.pytorch.org/whl/cpu torch >&2 ||
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.15.0" >&2
  fi
  TORCH_PYTHON="$venv/bin/python"
fi

if [ "${BUILD:-1}" = 1 ]; then
  cargo build --release --quiet -p neurofm-models --example train_step --example fma_peak
fi
bin="$target/release/examples"

mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
echo "start:  $(date -u '+%Y-%m-%d %H:%M UTC'), $(uptime | sed 's/.*load/load/')"
"$bin/fma_peak" | tee -a "$RESULTS"
for preset in "${presets[@]}"; do
  common=(--preset "$preset" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP"
          --channels "$CHANNELS" --patches "$PATCHES")
  for r in $(seq "$REPEATS"); do
    echo "[$preset run $r/$REPEATS] candle, then torch" >&2
    "$bin/train_step" "${common[@]}" 2>/dev/null | tail -n 1 | tee -a "$RESULTS"
    if [ -n "${BASELINE_BIN:-}" ]; then
      "$BASELINE_BIN" "${common[@]}" 2>/dev/null | tail -n 1 |
        sed 's/"impl":"candle"/"impl":"candle-baseline"/' | tee -a "$RESULTS"
    fi
    "$TORCH_PYTHON" scripts/bench/train_step.py "${common[@]}" --attn "$ATTN" 2>/dev/null |
      tail -n 1 | tee -a "$RESULTS"
  done
done
echo "end:    $(date -u '+%Y-%m-%d %H:%M UTC'), $(uptime | sed 's/.*load/load/')"

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = next(r["peak_gflops"] for r in rows if "peak_gflops" in r)
print(f"\nCPU f32 FMA peak: {peak:.0f} GFLOP/s")
runs = [r for r in rows if "impl" in r]
print("| preset | impl | params | tokens × batch | step s best | step s median | windows/s (median) "
      "| GFLOP/s | % of FMA peak | peak RSS MiB |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
ws = {}
for preset in dict.fromkeys(r["preset"] for r in runs):
    for impl in ("candle-baseline", "candle", "torch"):
        rs = [r for r in runs if r["preset"] == preset and r["impl"] == impl]
        if not rs:
            continue
        best = min(r["step_s_best"] for r in rs)
        med = statistics.median(r["step_s_median"] for r in rs)
        f = rs[0]["flops_per_step"]
        ws[preset, impl] = rs[0]["batch"] / med
        rss = max(r["peak_rss_mib"] or 0 for r in rs)
        name = f"torch {rs[0]['torch']} ({rs[0]['attn']})" if impl == "torch" else impl
        print(f"| {preset} | {name} | {rs[0]['params']} | {rs[0]['tokens']} × {rs[0]['batch']} "
              f"| {best:.3f} | {med:.3f} | {rs[0]['batch'] / med:.1f} | {f / med / 1e9:.1f} "
              f"| {100 * f / med / 1e9 / peak:.1f} | {rss:.0f} |")
    pc = {r["impl"]: r["params"] for r in runs if r["preset"] == preset}
    if len(set(pc.values())) > 1:
        print(f"WARNING: parameter counts differ for {preset}: {pc}")
for preset in dict.fromkeys(r["preset"] for r in runs):
    if (preset, "candle") in ws and (preset, "torch") in ws:
        print(f"{preset}: candle / torch windows/s = "
              f"{ws[preset, 'candle'] / ws[preset, 'torch']:.2f}×")
EOF
