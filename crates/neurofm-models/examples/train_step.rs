//! Times full masked-autoencoder training steps: forward, masked reconstruction loss,
//! backward, and an AdamW update of every parameter.
//!
//! ```text
//! cargo run --release -p neurofm-models --example train_step -- \
//!     --preset tiny|base --batch 16 --steps 10 [--warmup 2] [--channels 16] [--patches 16] \
//!     [--device cpu|cuda] [--dtype f32|bf16] [--seed 0]
//! ```
//!
//! The PyTorch twin is `scripts/bench/train_step.py` (same shapes, init scheme, masking and
//! optimizer); `scripts/bench/train_step.sh` runs both. The last line of the output is one
//! JSON object (`"impl": "candle"`) that the scripts parse.
//!
//! FLOPs per step count the matmuls only (linear layers and the two attention products),
//! times 3 for forward + backward, the convention of the MFU literature; both benchmarks use
//! the same formula ([`matmul_flops_fwd`] here, `matmul_flops_fwd` in the Python script).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use neurofm_models::adamw::{self, AdamWStep};
use neurofm_models::mask::random_patch_mask_on;
use neurofm_models::{Mae, MaeConfig};

struct Args {
    preset: String,
    batch: usize,
    steps: usize,
    warmup: usize,
    channels: usize,
    patches: usize,
    device: String,
    dtype: String,
    seed: u64,
}

const USAGE: &str = "usage: train_step [--preset tiny|base] [--batch B] [--steps N] [--warmup W] \
[--channels C] [--patches P] [--device cpu|cuda] [--dtype f32|bf16] [--seed S]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        preset: "tiny".into(),
        batch: 16,
        steps: 10,
        warmup: 2,
        channels: 16,
        patches: 16,
        device: "cpu".into(),
        dtype: "f32".into(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<usize>()
                .map_err(|e| format!("{flag}: {v:?} is not a non-negative integer ({e})"))
        };
        match flag.as_str() {
            "--preset" => a.preset = value,
            "--batch" => a.batch = num(&value)?,
            "--steps" => a.steps = num(&value)?,
            "--warmup" => a.warmup = num(&value)?,
            "--channels" => a.channels = num(&value)?,
            "--patches" => a.patches = num(&value)?,
            "--device" => a.device = value,
            "--dtype" => a.dtype = value,
            "--seed" => a.seed = num(&value)? as u64,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.batch == 0 || a.steps == 0 || a.channels == 0 || a.patches == 0 {
        return Err("--batch, --steps, --channels and --patches must be > 0".into());
    }
    Ok(a)
}

/// Forward matmul FLOPs of one step (2 per multiply-add): every linear layer and the
/// `Q K^T` and `P V` products of attention.
fn matmul_flops_fwd(cfg: &MaeConfig, batch: usize, channels: usize, patches: usize) -> f64 {
    let l = (channels * patches) as f64;
    let n = batch as f64 * l;
    let block = |d: f64, m: f64| {
        // qkv + proj + fc1 + fc2 per token, then the two attention products.
        2.0 * n * (3.0 * d * d + d * d + 2.0 * d * m) + 4.0 * batch as f64 * l * l * d
    };
    let d = cfg.d_model as f64;
    let mut f = 2.0 * n * cfg.patch_len as f64 * d;
    f += cfg.depth as f64 * block(d, cfg.mlp_dim as f64);
    let head_in = if cfg.decoder_depth > 0 {
        let dd = cfg.decoder_dim as f64;
        f += 2.0 * n * d * dd;
        let md = (cfg.mlp_dim * cfg.decoder_dim / cfg.d_model) as f64;
        f += cfg.decoder_depth as f64 * block(dd, md);
        dd
    } else {
        d
    };
    f + 2.0 * n * head_in * cfg.patch_len as f64
}

/// AdamW as `torch.optim.AdamW` (and `neurofm-train`'s optimizer, whose update kernel this is):
/// decoupled weight decay on tensors of rank >= 2, bias-corrected moments, updated in place.
struct AdamW {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    t: i32,
    state: BTreeMap<String, (Tensor, Tensor)>,
}

impl AdamW {
    fn step(
        &mut self,
        vars: &[(String, Var)],
        grads: &candle_core::backprop::GradStore,
    ) -> candle_core::Result<()> {
        self.t += 1;
        let s = AdamWStep::new(
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
            self.t,
        );
        for (name, var) in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let s = if var.rank() >= 2 {
                s
            } else {
                s.without_decay()
            };
            let (m, v) = match self.state.entry(name.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert((var.zeros_like()?, var.zeros_like()?)),
            };
            adamw::update(var, m, v, g, &s)?;
        }
        Ok(())
    }
}

/// Peak resident set size of this process (VmHWM), in MiB, when /proc is readable.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // as the neurofm CLI does: reuse freed tensors' memory instead of faulting in fresh pages
    neurofm_core::allocator::keep_freed_memory();
    // and runs candle's element-wise ops on the calling thread (no second spinning pool)
    neurofm_core::threads::candle_elementwise_on_caller();
    let args = parse_args()?;
    let cfg = MaeConfig::preset(&args.preset)?;
    if args.patches > cfg.max_patches {
        return Err(format!(
            "--patches {} exceeds max_patches {} of preset {}",
            args.patches, cfg.max_patches, args.preset
        )
        .into());
    }
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0)?,
        other => return Err(format!("--device must be cpu or cuda, got {other:?}").into()),
    };
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        other => return Err(format!("--dtype must be f32 or bf16, got {other:?}").into()),
    };
    if dtype == DType::BF16 && device.is_cpu() {
        return Err("--dtype bf16 is only supported with --device cuda".into());
    }

    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, dtype, &device);
    let model = Mae::new(&cfg, vb)?;
    let vars: Vec<(String, Var)> = {
        let data = vm.data().lock().map_err(|e| format!("varmap lock: {e}"))?;
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let n_params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();

    let (b, c, p, n) = (args.batch, args.channels, args.patches, cfg.patch_len);
    let x = Tensor::randn(0f32, 1f32, (b, c, p * n), &device)?.to_dtype(dtype)?;
    // Channel ids 0..C (valid 10-05 table entries).
    let ids = Tensor::arange(0u32, c as u32, &device)?;
    let mut opt = AdamW {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
        t: 0,
        state: BTreeMap::new(),
    };

    let flops_step = 3.0 * matmul_flops_fwd(&cfg, b, c, p);
    eprintln!(
        "candle: mae {} ({n_params} parameters), batch {b}, {c} channels x {p} patches = {} tokens, \
         {} {:?}, {} rayon threads",
        args.preset,
        c * p,
        args.device,
        dtype,
        rayon::current_num_threads()
    );
    let mut times = Vec::with_capacity(args.steps);
    let mut last_loss = f32::NAN;
    for step in 0..(args.warmup + args.steps) {
        let t0 = Instant::now();
        let mask =
            random_patch_mask_on(&[b, c, p], cfg.mask_ratio, args.seed, step as u64, &device)?;
        let loss = model.forward_loss(&x, &ids, &mask)?.loss;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&vars, &grads)?;
        let t3 = Instant::now();
        eprintln!(
            "phases: forward {:.3} s, backward {:.3} s, optimizer {:.3} s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64()
        );
        last_loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        device.synchronize()?;
        let dt = t0.elapsed().as_secs_f64();
        if step >= args.warmup {
            times.push(dt);
        }
        eprintln!("step {step}: {dt:.4} s, loss {last_loss:.5}");
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&times);
    let json = serde_json::json!({
        "impl": "candle",
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "batch": b,
        "tokens": c * p,
        "params": n_params,
        "steps": args.steps,
        "step_s_best": best,
        "step_s_median": med,
        "windows_per_s": b as f64 / med,
        "flops_per_step": flops_step,
        "gflops_median": flops_step / med / 1e9,
        "peak_rss_mib": peak_rss_mib(),
        "final_loss": last_loss,
        "threads": rayon::current_num_threads(),
    });
    println!("{json}");
    Ok(())
}
