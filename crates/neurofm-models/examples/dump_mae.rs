//! Writes a small masked autoencoder, a fixed batch and the model's outputs, for the
//! PyTorch parity check (`scripts/check/torch_mae_parity.py`).
//!
//! `cargo run -p neurofm-models --example dump_mae -- OUT_DIR` writes
//! `OUT_DIR/{config.json, model.safetensors, inputs.safetensors, outputs.safetensors}`.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use neurofm_models::gradcheck::seeded_uniform;
use neurofm_models::mask::random_patch_mask;
use neurofm_models::{Mae, MaeConfig, ModelConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: dump_mae OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let cfg = MaeConfig {
        patch_len: 16,
        d_model: 32,
        depth: 2,
        n_heads: 4,
        mlp_dim: 64,
        max_patches: 8,
        fft_loss_weight: 0.5,
        decoder_depth: 1,
        decoder_dim: 16,
        decoder_heads: 2,
        ..MaeConfig::tiny()
    };
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let mae = Mae::new(&cfg, vb)?;
    let (b, c, p) = (2usize, 3usize, 5usize);
    let x = seeded_uniform(&[b, c, p * cfg.patch_len], -2.0, 2.0, 42, DType::F32, &dev)?;
    let ids = Tensor::new(
        &[3u32, 40, neurofm_tokenize::channels::unknown_channel()],
        &dev,
    )?;
    let mask = random_patch_mask(&[b, c, p], cfg.mask_ratio, 7, 3)?;
    let o = mae.forward_loss(&x, &ids, &mask)?;
    let feats = mae.encode(&x, &ids)?;
    let fft = o.fft_loss.clone().ok_or("fft loss expected")?;

    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&ModelConfig::Mae(cfg.clone()))?,
    )?;
    vm.save(out.join("model.safetensors"))?;
    let inputs: HashMap<String, Tensor> = [
        ("x".to_string(), x),
        ("channel_ids".to_string(), ids.to_dtype(DType::I64)?),
        ("mask".to_string(), mask),
    ]
    .into_iter()
    .collect();
    candle_core::safetensors::save(&inputs, out.join("inputs.safetensors"))?;
    let outputs: HashMap<String, Tensor> = [
        ("loss".to_string(), o.loss.reshape(1)?),
        ("recon_loss".to_string(), o.recon_loss.reshape(1)?),
        ("fft_loss".to_string(), fft.reshape(1)?),
        ("pred".to_string(), o.pred),
        ("encode".to_string(), feats),
    ]
    .into_iter()
    .collect();
    candle_core::safetensors::save(&outputs, out.join("outputs.safetensors"))?;
    println!("wrote {}", out.display());
    Ok(())
}
