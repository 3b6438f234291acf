//! Prints the parameter count of every preset:
//! `cargo run -p neurofm-models --example params`.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use neurofm_models::{GptConfig, MaeConfig, ModelConfig};

fn count(cfg: &ModelConfig) -> candle_core::Result<(usize, usize)> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    cfg.build(vb)?;
    let vars = vm.all_vars();
    Ok((vars.len(), vars.iter().map(|v| v.elem_count()).sum()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for name in ["tiny", "base"] {
        let (t, n) = count(&ModelConfig::Mae(MaeConfig::preset(name)?))?;
        println!("mae {name}: {n} parameters in {t} tensors");
        let (t, n) = count(&ModelConfig::Gpt(GptConfig::preset(name)?))?;
        println!("gpt {name}: {n} parameters in {t} tensors");
    }
    Ok(())
}
