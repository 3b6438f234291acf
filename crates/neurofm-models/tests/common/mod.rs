//! Helpers shared by the integration tests.

use candle_core::{Result, Var};
use candle_nn::VarMap;

/// The variables of `vm`, sorted by name.
pub fn vars_of(vm: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = vm
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(format!("varmap lock: {e}")))?;
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}
