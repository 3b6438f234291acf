//! `neurofm pretrain / export / probe --checkpoint / finetune / tokenizer` end to end on a tiny
//! synthetic store: exact resume through the CLI, strict loading, bad configs refused before
//! training with the key named.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_neurofm");

fn neurofm(args: &[&str]) -> Output {
    Command::new(BIN).arg("-q").args(args).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails_with(out: Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected failure, got success");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in:\n{err}");
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let raw = dir.join("raw");
    let store = dir.join("prepared");
    ok(neurofm(&[
        "synth",
        "--preset",
        "tiny",
        "--out",
        raw.to_str().unwrap(),
    ]));
    let recipe = repo_root().join("configs/recipes/synth-200hz.toml");
    ok(neurofm(&[
        "prepare",
        "--recipe",
        recipe.to_str().unwrap(),
        "--input",
        raw.to_str().unwrap(),
        "--output",
        store.to_str().unwrap(),
    ]));
    Fixture {
        _tmp: tmp,
        dir,
        store,
    }
}

fn write_config(f: &Fixture, name: &str, out: &str, extra_model: &str, steps: u64) -> PathBuf {
    let path = f.dir.join(name);
    let text = format!(
        r#"
[data]
store = "{store}"

[data.window]
length_s = 2.0
stride_s = 2.0

[model]
kind = "mae"
preset = "tiny"

[model.overrides]
patch_len = 100
d_model = 16
depth = 1
n_heads = 2
mlp_dim = 32
{extra_model}

[train]
steps = {steps}
batch_size = 4
lr = 1e-3
warmup_steps = 2
seed = 3
checkpoint_every = 3
keep_last = 5
out = "{out}"
"#,
        store = f.store.display(),
        out = f.dir.join(out).display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn losses(run: &Path) -> Vec<(u64, u32)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap(),
                (v["loss"].as_f64().unwrap() as f32).to_bits(),
            )
        })
        .collect()
}

fn task_file(f: &Fixture) -> PathBuf {
    let path = f.dir.join("task.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "tiny-mi"
store = "{}"
classes = ["left", "right", "feet", "rest"]

[windows]
length_s = 4.0
stride_s = 4.0
labels = {{ from = "annotations", mapping = {{ left = "left", right = "right", feet = "feet", rest = "rest" }}, tmin_s = 0.0, tmax_s = 4.0 }}

[protocol]
type = "loso"
"#,
            f.store.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn pretrain_resume_export_probe_finetune() {
    let f = fixture();

    // Dry run: resolved config, parameter count, data summary; nothing written.
    let cfg = write_config(&f, "a.toml", "run-a", "", 6);
    let out = ok(neurofm(&[
        "pretrain",
        "-c",
        cfg.to_str().unwrap(),
        "--dry-run",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("parameters = "), "{text}");
    assert!(text.contains("subjects = 3"), "{text}");
    assert!(!f.dir.join("run-a").exists());

    // Uninterrupted: 6 steps.
    ok(neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]));
    let full = losses(&f.dir.join("run-a"));
    assert_eq!(full.len(), 6);
    for name in [
        "model.safetensors",
        "optimizer.safetensors",
        "config.json",
        "trainer_state.json",
    ] {
        assert!(f.dir.join("run-a/step-6").join(name).is_file(), "{name}");
    }
    assert!(f.dir.join("run-a/loss.png").is_file());

    // Interrupted after 3 steps, resumed to 6: the same losses, bit for bit.
    let cfg_b = write_config(&f, "b.toml", "run-b", "", 6);
    ok(neurofm(&[
        "pretrain",
        "-c",
        cfg_b.to_str().unwrap(),
        "--max-steps",
        "3",
    ]));
    ok(neurofm(&[
        "pretrain",
        "-c",
        cfg_b.to_str().unwrap(),
        "--resume",
    ]));
    assert_eq!(losses(&f.dir.join("run-b")), full);
    // From an explicit checkpoint, with the configuration saved in it, into another run dir.
    ok(neurofm(&[
        "pretrain",
        "--resume-from",
        f.dir.join("run-a/step-3").to_str().unwrap(),
        "--out",
        f.dir.join("run-c").to_str().unwrap(),
    ]));
    assert_eq!(losses(&f.dir.join("run-c")), full[3..]);

    // Export: safetensors + config.json beside it.
    let exported = f.dir.join("export/model.safetensors");
    ok(neurofm(&[
        "export",
        "--checkpoint",
        f.dir.join("run-a/step-6").to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]));
    assert!(exported.is_file());
    assert!(f.dir.join("export/config.json").is_file());

    // Probe the frozen encoder next to band power; finetune with both baselines.
    let task = task_file(&f);
    let probe_dir = f.dir.join("probe");
    ok(neurofm(&[
        "probe",
        "--task",
        task.to_str().unwrap(),
        "--checkpoint",
        f.dir.join("run-a").to_str().unwrap(),
        "--ea",
        "off",
        "--out",
        probe_dir.to_str().unwrap(),
    ]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(probe_dir.join("report.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = report["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    // The untrained twin stands beside every pretrained encoder.
    assert_eq!(
        names,
        [
            "mae-encoder+logreg",
            "random-init+logreg",
            "bandpower+logreg"
        ]
    );

    let ft_dir = f.dir.join("finetune");
    ok(neurofm(&[
        "finetune",
        "--task",
        task.to_str().unwrap(),
        "--checkpoint",
        f.dir.join("run-a/step-6").to_str().unwrap(),
        "--max-epochs",
        "2",
        "--batch-size",
        "16",
        "--out",
        ft_dir.to_str().unwrap(),
    ]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ft_dir.join("report.json")).unwrap())
            .unwrap();
    let methods = report["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["mae-finetune-full", "mae-scratch", "bandpower+logreg"]
    );
    // Same folds (one per subject) for every method.
    for m in methods {
        let folds: Vec<&str> = m["folds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["fold"].as_str().unwrap())
            .collect();
        assert_eq!(folds.len(), 3, "{}", m["name"]);
    }
    assert!(ft_dir.join("finetune.json").is_file());
    assert!(ft_dir.join("report.md").is_file());
}

#[test]
fn bad_configs_fail_before_training_naming_the_key() {
    let f = fixture();
    // Unknown key.
    let cfg = write_config(&f, "u.toml", "run-u", "", 2);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("batch_size = 4", "batch_size = 4\nlearning_rate = 3");
    std::fs::write(&cfg, text).unwrap();
    fails_with(
        neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]),
        &["learning_rate"],
    );
    // Unknown model field.
    let cfg = write_config(&f, "m.toml", "run-m", "dmodel = 3", 2);
    fails_with(
        neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]),
        &["model.overrides.dmodel"],
    );
    // A patch longer than the window (2 s at 200 Hz = 400 samples).
    let cfg = write_config(&f, "p.toml", "run-p", "", 2)
        .to_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("patch_len = 100", "patch_len = 500");
    std::fs::write(&cfg, text).unwrap();
    fails_with(neurofm(&["pretrain", "-c", &cfg]), &["patch_len"]);
    // A channel the store lacks.
    let cfg = write_config(&f, "c.toml", "run-c", "", 2);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[data.window]",
        "channels = [\"Cz\", \"Xyz\"]\n\n[data.window]",
    );
    std::fs::write(&cfg, text).unwrap();
    fails_with(
        neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]),
        &["data.channels", "Xyz"],
    );
    for run in ["run-u", "run-m", "run-p", "run-c"] {
        assert!(!f.dir.join(run).exists(), "{run} was created");
    }
}

#[test]
fn probing_data_from_another_recipe_is_refused() {
    let f = fixture();
    let cfg = write_config(&f, "a.toml", "run-a", "", 3);
    ok(neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]));
    // The raw (unprepared) store: another recipe hash.
    let task = task_file(&f);
    let out = neurofm(&[
        "probe",
        "--task",
        task.to_str().unwrap(),
        "--store",
        f.dir.join("raw").to_str().unwrap(),
        "--checkpoint",
        f.dir.join("run-a").to_str().unwrap(),
        "--out",
        f.dir.join("p").to_str().unwrap(),
    ]);
    fails_with(out, &["recipe", "--allow-recipe-mismatch"]);
}

#[test]
fn tokenizer_train_and_inspect() {
    let f = fixture();
    let tok = f.dir.join("mulaw.json");
    let cfg = repo_root().join("configs/tokenizer/mulaw.toml");
    let out = ok(neurofm(&[
        "tokenizer",
        "train",
        "--store",
        f.store.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        tok.to_str().unwrap(),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nmse = v["report"]["reconstruction"]["nmse"].as_f64().unwrap();
    assert!(nmse > 0.0 && nmse < 0.1, "NMSE {nmse}");
    let out = ok(neurofm(&[
        "tokenizer",
        "inspect",
        tok.to_str().unwrap(),
        "--store",
        f.store.to_str().unwrap(),
        "--json",
    ]));
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        w["report"]["reconstruction"]["nmse"].as_f64().unwrap(),
        nmse
    );
}

#[test]
fn gpt_pretrains_on_mulaw_tokens_and_checkpoints_the_tokenizer() {
    let f = fixture();
    let tok = f.dir.join("mulaw.json");
    let tcfg = repo_root().join("configs/tokenizer/mulaw.toml");
    ok(neurofm(&[
        "tokenizer",
        "train",
        "--store",
        f.store.to_str().unwrap(),
        "--config",
        tcfg.to_str().unwrap(),
        "--out",
        tok.to_str().unwrap(),
    ]));
    let write = |name: &str, tokenizer: &str, extra: &str| {
        let path = f.dir.join(name);
        std::fs::write(
            &path,
            format!(
                r#"
[data]
store = "{}"
[data.window]
length_s = 0.5
stride_s = 0.5
{tokenizer}
[model]
kind = "gpt"
preset = "tiny"
[model.overrides]
d_model = 16
depth = 1
n_heads = 2
mlp_dim = 32
{extra}
[train]
steps = 4
batch_size = 2
lr = 1e-3
seed = 1
out = "{}"
"#,
                f.store.display(),
                f.dir.join("gpt-run").display()
            ),
        )
        .unwrap();
        path
    };
    let tok_section = format!("[tokenizer]\npath = \"{}\"", tok.display());
    // No tokenizer: refused, naming the key.
    let cfg = write("no-tok.toml", "", "");
    fails_with(
        neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]),
        &["tokenizer.path"],
    );
    // A vocabulary that disagrees with the tokenizer.
    let cfg = write("bad-vocab.toml", &tok_section, "vocab_size = 100");
    fails_with(
        neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]),
        &["model.overrides.vocab_size", "256"],
    );
    let cfg = write("gpt.toml", &tok_section, "");
    ok(neurofm(&["pretrain", "-c", cfg.to_str().unwrap()]));
    let l = losses(&f.dir.join("gpt-run"));
    assert_eq!(l.len(), 4);
    // Cross-entropy over 256 tokens starts near ln 256 = 5.55 and must be finite.
    let first = f32::from_bits(l[0].1);
    assert!(first > 4.0 && first < 7.0, "first loss {first}");
    assert!(f.dir.join("gpt-run/step-4/tokenizer.json").is_file());
}
