#!/usr/bin/env bash
# Builds a CUDA-enabled neurofm binary on a machine with no GPU and no system CUDA toolkit, for
# a GPU machine that has the NVIDIA driver (and CUDA 13 libraries, e.g. from a PyTorch install).
#
# Usage: scripts/gpu/build.sh [PACKAGE [TARGET]]
#   PACKAGE  cargo package (default neurofm-models)
#   TARGET   example:NAME or bin:NAME (default example:train_step)
#   e.g.     scripts/gpu/build.sh neurofm bin:neurofm     (once the CLI has a `cuda` feature)
#
# What it does:
# 1. creates scripts/gpu/.venv with the CUDA 13.0 toolkit wheels from PyPI (nvcc, runtime,
#    crt, nvvm, cccl, nvrtc, cuBLAS, cuRAND). 13.0, not newer: driver 580 loads PTX up to 13.0.
# 2. assembles a CUDA root (scripts/gpu/.venv/cuda-root: bin, include, nvvm, lib64 with
#    unversioned .so links) and a stub libcuda.so (soname libcuda.so.1) exporting every driver
#    function cudarc declares: candle links the driver library at build time, the real one
#    is loaded at run time on the GPU machine.
# 3. cargo build --release --features cuda with CARGO_TARGET_DIR=/work/target-cuda (override
#    with CUDA_TARGET_DIR), CUDA_COMPUTE_CAP=90 (H100; override with CUDA_COMPUTE_CAP).
# 4. copies the binary, without symbols, to gpu-bin/<name> in the repository root (gitignored),
#    and a gzip copy to gpu-bin/<name>.gz, and prints the path of the copy to carry.
#    A device run carries at most 64 MiB in all, working tree included: the stripped binaries
#    (train_step 54 MB, the neurofm CLI 67 MB) do not fit together, and the CLI alone leaves
#    no room for the tree; gzipped they are 13 MB and 18 MB. Carry the .gz
#    (carry: ["gpu-bin/train_step.gz"]); scripts/gpu/bench.sh unpacks it on the GPU machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
pkg="${1:-neurofm-models}"
target="${2:-example:train_step}"
kind="${target%%:*}"
name="${target#*:}"
case "$kind" in
  example) sel=(--example "$name") ;;
  bin) sel=(--bin "$name") ;;
  *) echo "TARGET must be example:NAME or bin:NAME, got '$target'" >&2; exit 2 ;;
esac

venv="$root/scripts/gpu/.venv"
wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
        nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88
        nvidia-cublas==13.0.2.14 nvidia-curand==10.4.5.25)
stamp="$venv/.wheels"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${wheels[*]}" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${wheels[@]}"
  echo "${wheels[*]}" > "$stamp"
fi
cu="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[ -x "$cu/bin/nvcc" ] || { echo "no nvcc under $cu" >&2; exit 1; }

cuda_root="$venv/cuda-root"
rm -rf "$cuda_root"
mkdir -p "$cuda_root/lib64"
for d in bin include nvvm; do ln -s "$cu/$d" "$cuda_root/$d"; done
for f in "$cu"/lib/*.so.*; do
  base="$(basename "$f")"
  ln -s "$f" "$cuda_root/lib64/$base"
  unversioned="${base%%.so.*}.so"
  [ -e "$cuda_root/lib64/$unversioned" ] || ln -s "$f" "$cuda_root/lib64/$unversioned"
done

# Stub driver library: one dummy definition per cu* function of cudarc's driver bindings.
cudarc_version="$(grep -A1 '^name = "cudarc"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
[ -n "$cudarc_version" ] || { echo "cudarc not found in Cargo.lock" >&2; exit 1; }
cargo fetch --locked --quiet
crate="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"cudarc-$cudarc_version.crate" | head -n 1)"
tar xzf "$crate" -O "cudarc-$cudarc_version/src/driver/sys/mod.rs" |
  grep -oE 'fn cu[A-Za-z0-9_]+\(' | sed 's/^fn \(.*\)($/\1/' | sort -u |
  awk '{ print "int " $1 "(void) { return 999; /* CUDA_ERROR_UNKNOWN */ }" }' > "$cuda_root/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda_root/lib64/libcuda.so.1" "$cuda_root/libcuda_stub.c"
ln -s libcuda.so.1 "$cuda_root/lib64/libcuda.so"
echo "stub libcuda.so.1: $(wc -l < "$cuda_root/libcuda_stub.c") functions" >&2

export CUDA_ROOT="$cuda_root" CUDA_PATH="$cuda_root" CUDA_HOME="$cuda_root"
export PATH="$cuda_root/bin:$PATH"
export LIBRARY_PATH="$cuda_root/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CUDA_TARGET_DIR:-/work/target-cuda}"
nvcc --version | tail -n 2 >&2
cargo build --release --locked -p "$pkg" --features cuda "${sel[@]}"

if [ "$kind" = example ]; then src="$CARGO_TARGET_DIR/release/examples/$name"; else src="$CARGO_TARGET_DIR/release/$name"; fi
mkdir -p "$root/gpu-bin"
cp "$src" "$root/gpu-bin/$name"
strip --strip-all "$root/gpu-bin/$name"
# The copy to carry: gzip shrinks it to about a quarter (most of the binary is candle's embedded
# CUDA kernels).
gzip -6 -c "$root/gpu-bin/$name" > "$root/gpu-bin/$name.gz.tmp"
mv "$root/gpu-bin/$name.gz.tmp" "$root/gpu-bin/$name.gz"
size=$(stat -c %s "$root/gpu-bin/$name.gz")
echo "gpu-bin/$name: $(stat -c %s "$root/gpu-bin/$name") bytes; gpu-bin/$name.gz: $size bytes" >&2
if [ "$size" -gt $((60 * 1024 * 1024)) ]; then
  echo "warning: gpu-bin/$name.gz is $size bytes: with the working tree it may exceed the 64 MiB a device run can carry" >&2
fi
echo "needs at run time: $(readelf -d "$root/gpu-bin/$name" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')" >&2
echo "gpu-bin/$name.gz"
