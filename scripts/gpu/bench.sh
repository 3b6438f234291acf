#!/usr/bin/env bash
# GPU training-step benchmark, prepared for a borrowed machine with the NVIDIA driver and a
# Python with PyTorch (CUDA 13 build), and no Rust and no internet. Runs, for the MAE preset
# $PRESET, the carried candle binary (built by scripts/gpu/build.sh) in f32 and bf16, then the
# PyTorch twin (scripts/bench/train_step.py) in f32 and bf16, and prints windows/s, step time,
# peak device memory and MFU for each. Results go to $OUT/ (default target/gpu-bench/).
#
# Usage: scripts/gpu/bench.sh [BINARY]     (default: gpu-bin/train_step, or gpu-bin/train_step.gz
#   as build.sh prints; a BINARY ending in .gz is unpacked to $TMPDIR first)
# Environment: PRESET (base), BATCH (64), STEPS (20), WARMUP (3), CHANNELS (16), PATCHES (16),
#   PYTHON (python3: must import torch), ATTN (sdpa | manual).
#
# The cuBLAS / cuRAND / NVRTC libraries the candle binary links (sonames .so.13 / .so.10) are
# taken from the nvidia-* packages of PyTorch's site-packages, found with $PYTHON.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bin="${1:-}"
if [ -z "$bin" ]; then
  bin="$root/gpu-bin/train_step"
  [ -e "$bin" ] || [ ! -e "$bin.gz" ] || bin="$bin.gz"
fi
if [ "${bin%.gz}" != "$bin" ] && [ -f "$bin" ]; then
  unpacked="${TMPDIR:-/tmp}/neurofm-gpu/$(basename "${bin%.gz}")"
  mkdir -p "$(dirname "$unpacked")"
  gzip -dc "$bin" > "$unpacked.tmp" && chmod +x "$unpacked.tmp" && mv "$unpacked.tmp" "$unpacked" ||
    { echo "could not unpack $bin" >&2; exit 1; }
  bin="$unpacked"
fi
PRESET="${PRESET:-base}"
BATCH="${BATCH:-64}"
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-3}"
CHANNELS="${CHANNELS:-16}"
PATCHES="${PATCHES:-16}"
ATTN="${ATTN:-sdpa}"
PYTHON="${PYTHON:-python3}"
out="${OUT:-$root/target/gpu-bench}"
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

libdirs="$("$PYTHON" - <<'EOF'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
try:
    import torch
    roots.append(os.path.dirname(os.path.dirname(torch.__file__)))
except Exception:
    pass
dirs = []
for r in roots:
    for pat in ("nvidia/*/lib", "nvidia/cu13/lib", "torch/lib"):
        for d in sorted(glob.glob(os.path.join(r, pat))):
            if d not in dirs:
                dirs.append(d)
print(":".join(dirs))
EOF
)"
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  if [ -x "$bin" ]; then ldd "$bin"; else echo "candle binary $bin not found"; fi
} 2>&1 | tee "$out/env.txt"

# Runs "$@" while sampling the GPU's used memory every 100 ms; appends the JSON result line
# (the command's last stdout line) with the sampled peak added as "smi_peak_mib".
measure() {
  local tag="$1"; shift
  local base
  base="$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n 1)"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$out/mem_$tag.txt" 2>/dev/null &
  local mon=$!
  "$@" > "$out/run_$tag.txt" 2> "$out/log_$tag.txt"
  local rc=$?
  kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
  if [ $rc -ne 0 ]; then
    echo "$tag: exit status $rc (see $out/log_$tag.txt)"; tail -n 5 "$out/log_$tag.txt"; return 0
  fi
  local peak
  peak="$(sort -n "$out/mem_$tag.txt" | tail -n 1)"
  tail -n 1 "$out/run_$tag.txt" | "$PYTHON" -c "
import json, sys
r = json.loads(sys.stdin.read()); r['smi_peak_mib'] = float('${peak:-0}') - float('${base:-0}')
r['tag'] = '$tag'; print(json.dumps(r))" | tee -a "$results"
}

common=(--preset "$PRESET" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP"
        --channels "$CHANNELS" --patches "$PATCHES" --device cuda)
if [ -x "$bin" ]; then
  for dt in f32 bf16; do measure "candle_$dt" "$bin" "${common[@]}" --dtype "$dt"; done
fi
for dt in f32 bf16; do
  measure "torch_$dt" "$PYTHON" scripts/bench/train_step.py "${common[@]}" --dtype "$dt" --attn "$ATTN"
done

"$PYTHON" - "$results" "$out/summary.md" <<'EOF'
import json, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                      capture_output=True, text=True).stdout.strip().splitlines()[0]
# Dense peaks in TFLOP/s (NVIDIA data sheets): f32 without tensor cores, bf16 tensor cores.
PEAKS = {"H100 PCIe": (51.2, 756.0), "H100 NVL": (60.0, 835.0), "H200": (66.9, 989.4),
         "H100": (66.9, 989.4)}  # H100 SXM5
peak = next((v for k, v in PEAKS.items() if k in name), None)
lines = [f"GPU: {name}; MFU against dense peaks f32 {peak[0] if peak else '?'} TFLOP/s, "
         f"bf16 {peak[1] if peak else '?'} TFLOP/s",
         "", "| impl | dtype | batch | step s best | step s median | windows/s | TFLOP/s | MFU % "
         "| peak device MiB (nvidia-smi) | torch max allocated MiB |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    tf = r["flops_per_step"] / r["step_s_median"] / 1e12
    mfu = 100 * tf / (peak[0] if r["dtype"] == "f32" else peak[1]) if peak else float("nan")
    alloc = r.get("peak_device_mib")
    impl = r["impl"] + (f" {r['torch']} ({r['attn']})" if r["impl"] == "torch" else "")
    lines.append(f"| {impl} | {r['dtype']} | {r['batch']} | {r['step_s_best']:.4f} | "
                 f"{r['step_s_median']:.4f} | {r['windows_per_s']:.1f} | {tf:.2f} | {mfu:.1f} | "
                 f"{r['smi_peak_mib']:.0f} | {'' if alloc is None else f'{alloc:.0f}'} |")
text = "\n".join(lines)
print("\n" + text)
open(sys.argv[2], "w").write(text + "\n")
EOF
