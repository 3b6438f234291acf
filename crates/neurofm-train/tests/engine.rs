//! Engine tests: exact resume, keep-last-N, NaN guard, strict loading, metrics and plot.

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;

use candle_core::Device;
use common::*;
use neurofm_train::checkpoint::{self, sorted_vars};
use neurofm_train::{load_strict, TrainError, Trainer};

type R = Result<(), Box<dyn std::error::Error>>;

fn weights_bits(varmap: &candle_nn::VarMap) -> Result<Vec<(String, Vec<u32>)>, TrainError> {
    let mut out = Vec::new();
    for (name, var) in sorted_vars(varmap) {
        let v = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        out.push((name, v.iter().map(|x| x.to_bits()).collect()));
    }
    Ok(out)
}

fn bits(losses: &[(u64, f32)]) -> Vec<(u64, u32)> {
    losses.iter().map(|&(s, l)| (s, l.to_bits())).collect()
}

#[test]
fn interrupted_and_resumed_run_matches_straight_run_bit_for_bit() -> R {
    let n_steps = 8;
    // Straight run.
    let straight_dir = tempfile::tempdir()?;
    let (vm_a, model_a) = model(1)?;
    let mut a = Trainer::new(
        config(n_steps),
        run_info(straight_dir.path()),
        &vm_a,
        Device::Cpu,
        source(37),
        &model_a,
    )?;
    let straight = a.run(&mut |_| ControlFlow::Continue(()))?;
    assert_eq!(straight.losses.len(), n_steps as usize);

    // Interrupted after step 5 (checkpoints at 2 and 4), then a fresh process resumes from the
    // newest checkpoint and finishes.
    let dir = tempfile::tempdir()?;
    let (vm_b, model_b) = model(1)?;
    let mut b = Trainer::new(
        config(n_steps),
        run_info(dir.path()),
        &vm_b,
        Device::Cpu,
        source(37),
        &model_b,
    )?;
    let first = b.run(&mut |r| {
        if r.step == 5 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    assert!(first.stopped);
    assert_eq!(first.losses.len(), 5);
    let latest = checkpoint::latest(dir.path())?.ok_or("no checkpoint")?;
    assert!(latest.ends_with("step-4"), "{}", latest.display());

    let (vm_c, model_c) = model(999)?; // other initial weights: all must come from the checkpoint
    let mut c = Trainer::new(
        config(n_steps),
        run_info(dir.path()),
        &vm_c,
        Device::Cpu,
        source(37),
        &model_c,
    )?;
    let report = c.resume(&latest)?;
    assert!(report.is_exact());
    assert_eq!(report.matched.len(), 4);
    assert_eq!(c.state().step, 4);
    let second = c.run(&mut |_| ControlFlow::Continue(()))?;

    let mut resumed = first.losses[..4].to_vec();
    resumed.extend_from_slice(&second.losses);
    assert_eq!(bits(&resumed), bits(&straight.losses));
    assert_eq!(weights_bits(&vm_c)?, weights_bits(&vm_a)?);
    // The recomputed step 5 equals the one of the interrupted attempt.
    assert_eq!(first.losses[4].1.to_bits(), second.losses[0].1.to_bits());

    // metrics.jsonl holds steps 1..=8 once each (the interrupted step 5 was replaced).
    let text = std::fs::read_to_string(dir.path().join("metrics.jsonl"))?;
    let steps: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<neurofm_train::StepRecord>(l).map(|r| r.step))
        .collect::<Result<_, _>>()?;
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
    let straight_text = std::fs::read_to_string(straight_dir.path().join("metrics.jsonl"))?;
    let losses = |t: &str| -> Result<Vec<u32>, serde_json::Error> {
        t.lines()
            .map(|l| serde_json::from_str::<neurofm_train::StepRecord>(l).map(|r| r.loss.to_bits()))
            .collect()
    };
    assert_eq!(losses(&text)?, losses(&straight_text)?);

    // keep_last = 2
    let kept: Vec<u64> = checkpoint::list(dir.path())?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(kept, vec![6, 8]);
    // the loss curve is a PNG
    let png = std::fs::read(dir.path().join("loss.png"))?;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    Ok(())
}

#[test]
fn training_reduces_the_loss() -> R {
    let dir = tempfile::tempdir()?;
    let (vm, m) = model(3)?;
    let mut cfg = config(60);
    cfg.checkpoint_every = 0;
    let mut t = Trainer::new(cfg, run_info(dir.path()), &vm, Device::Cpu, source(64), &m)?;
    let s = t.run(&mut |_| ControlFlow::Continue(()))?;
    let mean = |v: &[(u64, f32)]| v.iter().map(|x| x.1 as f64).sum::<f64>() / v.len() as f64;
    let (head, tail) = (mean(&s.losses[..10]), mean(&s.losses[50..]));
    assert!(tail < 0.7 * head, "loss {head} -> {tail}");
    Ok(())
}

#[test]
fn resume_refuses_another_seed_or_batch_size() -> R {
    let dir = tempfile::tempdir()?;
    let (vm, m) = model(1)?;
    let mut t = Trainer::new(
        config(2),
        run_info(dir.path()),
        &vm,
        Device::Cpu,
        source(37),
        &m,
    )?;
    t.run(&mut |_| ControlFlow::Continue(()))?;
    let ckpt = dir.path().join("step-2");
    let mut cfg = config(4);
    cfg.seed = 12;
    let mut other = Trainer::new(cfg, run_info(dir.path()), &vm, Device::Cpu, source(37), &m)?;
    let err = other
        .resume(&ckpt)
        .err()
        .ok_or("resumed with another seed")?;
    assert!(err.to_string().contains("train.seed"), "{err}");
    let mut cfg = config(4);
    cfg.batch_size = 2;
    let mut other = Trainer::new(cfg, run_info(dir.path()), &vm, Device::Cpu, source(37), &m)?;
    let err = other
        .resume(&ckpt)
        .err()
        .ok_or("resumed with another batch size")?;
    assert!(err.to_string().contains("train.batch_size"), "{err}");
    Ok(())
}

#[test]
fn nan_input_stops_naming_step_and_recording_and_keeps_last_checkpoint() -> R {
    let dir = tempfile::tempdir()?;
    let (vm, m) = model(1)?;
    let mut cfg = config(20);
    cfg.checkpoint_every = 1;
    cfg.keep_last = 0;
    // The window at position 20 of epoch 0 is in micro-batch 5, i.e. optimizer step 3.
    let bad = neurofm_train::loader::epoch_order(37, 11, 0)[20];
    let src: Arc<dyn neurofm_train::WindowSource> = Arc::new(Sines {
        n: 37,
        nan_at: Some(bad),
    });
    let mut t = Trainer::new(cfg, run_info(dir.path()), &vm, Device::Cpu, src, &m)?;
    let err = t
        .run(&mut |_| ControlFlow::Continue(()))
        .err()
        .ok_or("no error")?;
    let TrainError::NonFinite {
        step,
        what,
        recordings,
    } = &err
    else {
        return Err(format!("unexpected error {err}").into());
    };
    assert_eq!(what, "input sample");
    assert_eq!(*step, 3);
    assert_eq!(
        recordings,
        &vec![format!("sub-{:02}_rec@{}", bad % 4, bad * T)]
    );
    assert!(err.to_string().contains(&format!("step {step}")));
    // every checkpoint before the failing step is complete and loadable; none after it
    let all = checkpoint::list(dir.path())?;
    assert_eq!(all.last().map(|x| x.0), Some(step - 1));
    let last = checkpoint::Checkpoint::load(&all.last().ok_or("none")?.1)?;
    assert_eq!(last.state.step, step - 1);
    let (vm2, _) = model(5)?;
    load_strict(&last.model_path(), &vm2, false)?;
    Ok(())
}

#[test]
fn nan_loss_stops_naming_the_step() -> R {
    let dir = tempfile::tempdir()?;
    let (vm, mut m) = model(1)?;
    m.nan_at_step = Some(6); // micro-batch 6 = step 4 with accumulate = 2
    let mut t = Trainer::new(
        config(8),
        run_info(dir.path()),
        &vm,
        Device::Cpu,
        source(37),
        &m,
    )?;
    let err = t
        .run(&mut |_| ControlFlow::Continue(()))
        .err()
        .ok_or("no error")?;
    let msg = err.to_string();
    assert!(msg.contains("non-finite loss at step 4"), "{msg}");
    assert!(msg.contains("sub-"), "{msg}");
    assert_eq!(
        checkpoint::latest(dir.path())?.map(|p| p.ends_with("step-2")),
        Some(true)
    );
    Ok(())
}

#[test]
fn load_strict_reports_missing_unexpected_and_shape_mismatch() -> R {
    use neurofm_train::st::{self, HostTensor};
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir()?;
    let (vm, _) = model(1)?;
    let path = dir.path().join("w.safetensors");
    let mut tensors = BTreeMap::new();
    for (name, var) in sorted_vars(&vm) {
        tensors.insert(name, HostTensor::from_tensor(var.as_tensor())?);
    }
    st::save(&path, &tensors, &BTreeMap::new())?;
    let (vm2, _) = model(2)?;
    let report = load_strict(&path, &vm2, false)?;
    assert_eq!(report.matched.len(), 4);
    assert_eq!(weights_bits(&vm2)?, weights_bits(&vm)?);

    // missing: refused unless allowed, and then the rest is loaded
    let mut partial = tensors.clone();
    partial.remove("dec.bias");
    st::save(&path, &partial, &BTreeMap::new())?;
    let err = load_strict(&path, &vm2, false)
        .err()
        .ok_or("accepted a missing tensor")?;
    assert!(err.to_string().contains("missing: dec.bias"), "{err}");
    let report = load_strict(&path, &vm2, true)?;
    assert_eq!(report.missing, vec!["dec.bias".to_string()]);

    // unexpected and shape mismatch: always refused, nothing modified
    let before = weights_bits(&vm2)?;
    let mut bad = tensors.clone();
    bad.insert(
        "extra.weight".into(),
        HostTensor {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    bad.insert(
        "enc.bias".into(),
        HostTensor {
            shape: vec![3],
            data: vec![0.0; 3],
        },
    );
    st::save(&path, &bad, &BTreeMap::new())?;
    let err = load_strict(&path, &vm2, true)
        .err()
        .ok_or("accepted a bad file")?;
    let TrainError::Mismatch { report, .. } = &err else {
        return Err(format!("unexpected error {err}").into());
    };
    assert_eq!(report.unexpected, vec!["extra.weight".to_string()]);
    assert_eq!(
        report.shape_mismatch,
        vec![("enc.bias".to_string(), vec![8], vec![3])]
    );
    assert_eq!(weights_bits(&vm2)?, before);
    Ok(())
}

#[test]
fn export_writes_pytorch_names_metadata_config_and_a_checkable_forward() -> R {
    let dir = tempfile::tempdir()?;
    let (vm, m) = model(1)?;
    let mut t = Trainer::new(
        config(2),
        run_info(dir.path()),
        &vm,
        Device::Cpu,
        source(37),
        &m,
    )?;
    t.run(&mut |_| ControlFlow::Continue(()))?;
    // CI sets NEUROFM_EXPORT_OUT to keep the export for scripts/check/export_numpy.py.
    let out = match std::env::var_os("NEUROFM_EXPORT_OUT") {
        Some(p) => std::path::PathBuf::from(p),
        None => dir.path().join("export").join("tiny.safetensors"),
    };
    let s = neurofm_train::export::export(&dir.path().join("step-2"), &out)?;
    assert_eq!(s.n_tensors, 4);
    assert_eq!(s.n_parameters, 2 * HIDDEN * PATCH + HIDDEN + PATCH);
    let loaded = neurofm_train::st::load(&out)?;
    let meta = &loaded.metadata;
    assert_eq!(meta.get("model_kind").map(String::as_str), Some("tiny"));
    assert_eq!(meta.get("recipe_hash").map(String::as_str), Some("abc123"));
    assert_eq!(meta.get("tokenizer").map(String::as_str), Some("null"));
    assert_eq!(
        meta.get("channels").map(String::as_str),
        Some(r#"["Fz","Cz","Pz"]"#)
    );
    assert!(meta.contains_key("neurofm_version"));
    // the weights are the trained ones, bit for bit
    for (name, var) in sorted_vars(&vm) {
        let want = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let got = loaded.tensors.get(&name).ok_or("tensor missing")?;
        assert_eq!(got.data, want, "{name}");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.with_file_name("config.json"))?)?;
    assert_eq!(config["type"], "tiny");
    // the check file: dec (first linear by name) applied to the fixed input
    let check: neurofm_train::export::ExportCheck =
        serde_json::from_slice(&std::fs::read(format!("{}.check.json", out.display()))?)?;
    assert_eq!(check.linear, "dec");
    let w = &loaded.tensors["dec.weight"];
    let b = &loaded.tensors["dec.bias"];
    for (x, y) in check.input.iter().zip(&check.output) {
        for (o, yo) in y.iter().enumerate() {
            let mut acc = b.data[o] as f64;
            for (i, xi) in x.iter().enumerate() {
                acc += *xi as f64 * w.data[o * HIDDEN + i] as f64;
            }
            assert!((acc - *yo as f64).abs() < 1e-5, "{acc} vs {yo}");
        }
    }
    Ok(())
}
