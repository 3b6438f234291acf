//! Storing homogenized C. elegans recordings and connectomes.
//!
//! A [`Homogenized`] recording goes into the store with two extra tensors: `mask` (`[302]`,
//! 1 = recorded and identified neuron) and `covariates` (`[n_covariates, n_times]`, behaviour
//! series on the same time grid); the covariate names are the entry label `covariates`. A
//! [`Connectome`] becomes a graph over the 302 canonical neurons with tensors `chemical` and
//! `gap` (`[302, 302]`, row = pre-synaptic).

use std::collections::BTreeMap;

use neurofm_io::celegans::{Connectome, Homogenized};
use serde_json::Value;

use crate::store::{ExtraTensor, NewEntry, Store, StoreError};

/// The store entry extras for a homogenized recording.
pub fn homogenized_entry(h: &Homogenized) -> NewEntry {
    let n_t = h.recording.signal.n_times();
    let mut labels = BTreeMap::new();
    labels.insert(
        "covariates".to_string(),
        Value::from(h.covariate_names.clone()),
    );
    let mut extras = vec![ExtraTensor {
        name: "mask".into(),
        shape: vec![h.mask.len()],
        data: h.mask.clone(),
    }];
    if !h.covariate_names.is_empty() {
        extras.push(ExtraTensor {
            name: "covariates".into(),
            shape: vec![h.covariate_names.len(), n_t],
            data: h.covariates.clone(),
        });
    }
    NewEntry {
        labels,
        extras,
        recipe: None,
    }
}

/// Adds a homogenized recording; returns its id.
pub fn add_homogenized(store: &mut Store, h: &Homogenized) -> Result<String, StoreError> {
    store.add(&h.recording, homogenized_entry(h))
}

/// Adds a connectome as graph `name`, with `metadata` (e.g. source files) and its report.
pub fn add_connectome(
    store: &mut Store,
    name: &str,
    c: &Connectome,
    mut metadata: BTreeMap<String, Value>,
) -> Result<(), StoreError> {
    let n = c.nodes.len();
    if !c.report.is_empty() {
        metadata.insert("report".into(), Value::from(c.report.clone()));
    }
    store.add_graph(
        name,
        c.nodes.clone(),
        vec![
            ExtraTensor {
                name: "chemical".into(),
                shape: vec![n, n],
                data: c.chemical.clone(),
            },
            ExtraTensor {
                name: "gap".into(),
                shape: vec![n, n],
                data: c.gap.clone(),
            },
        ],
        metadata,
    )
}
