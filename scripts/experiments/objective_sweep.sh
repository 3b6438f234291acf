#!/usr/bin/env bash
# The objective sweep of docs/results.md ("Pretraining objectives on the synthetic task"):
# pretrain the tiny MAE on synthetic subjects generated with another seed (never the probed
# ones), then probe it leave-one-subject-out on the quickstart store with channel pooling, next to
# its random-init twin and band power. Usage: scripts/experiments/objective_sweep.sh [NAME...]
# (names: bands, bins, rawnorm, raw; default all). Outputs under runs/objective-sweep/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
cargo build --release --locked -p neurofm
bin="${CARGO_TARGET_DIR:-target}/release/neurofm"
out=runs/objective-sweep
mkdir -p "$out"
recipe=configs/recipes/synth-200hz.toml
[ -f data/synth/manifest.json ] || "$bin" synth --out data/synth --quiet
[ -f data/synth-200hz/manifest.json ] || "$bin" prepare --recipe $recipe --input data/synth --output data/synth-200hz --quiet
[ -f data/synth-pre/manifest.json ] || "$bin" synth --out data/synth-pre --seed 1 --quiet
[ -f data/synth-pre-200hz/manifest.json ] || "$bin" prepare --recipe $recipe --input data/synth-pre --output data/synth-pre-200hz --quiet
# The quickstart task with a smaller C grid and 3 inner folds (the sweep's probe setting).
sed -e '/^\[protocol\]/,$d' configs/tasks/synth-motor-imagery.toml > "$out/task.toml"
printf '[protocol]\ntype = "loso"\n[probe]\ncs = [0.01, 0.1, 1.0]\ninner_folds = 3\n' >> "$out/task.toml"
objective() {
  case "$1" in
    bands) printf 'kind = "spectral"\nbands_hz = [[1,4],[4,8],[8,13],[13,30],[30,45]]\nphase_weight = 0.0\n' ;;
    bins) printf 'kind = "spectral"\nphase_weight = 0.0\n' ;;
    rawnorm) printf 'kind = "raw-normalized"\n' ;;
    raw) printf 'kind = "raw"\n' ;;
    *) echo "unknown sweep entry $1" >&2; exit 2 ;;
  esac
}
for n in "${@:-bands bins rawnorm raw}"; do
  for name in $n; do
    cfg="$out/$name.toml"
    {
      printf '[data]\nstore = "data/synth-pre-200hz"\n[data.window]\nlength_s = 4.0\nstride_s = 1.0\n'
      printf '[model]\nkind = "mae"\npreset = "tiny"\n[model.overrides]\npatch_len = 100\n'
      printf '[objective]\n'; objective "$name"
      printf '[train]\nsteps = 1000\nbatch_size = 16\nlr = 1e-3\nmin_lr = 1e-5\nwarmup_steps = 50\n'
      printf 'weight_decay = 0.05\ngrad_clip = 1.0\nseed = 0\ncheckpoint_every = 0\nkeep_last = 1\n'
      printf 'out = "%s/ck-%s"\n' "$out" "$name"
    } > "$cfg"
    rm -rf "$out/ck-$name"
    "$bin" pretrain --config "$cfg"
    "$bin" probe --task "$out/task.toml" --store data/synth-200hz --checkpoint "$out/ck-$name" \
      --pool channel --seeds 0 --ea off --out "$out/run-$name"
  done
done
