//! `neurofm ingest-connectome`: put a C. elegans connectome into a store as a graph.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use neurofm_data::Store;
use serde_json::Value;

use crate::Global;

/// Store a C. elegans connectome (chemical synapses and gap junctions) as a graph.
///
/// The graph's nodes are the 302 canonical neurons (the row order of homogenized calcium
/// recordings); it holds two `[302, 302]` float32 tensors: `chemical` (row = pre-synaptic,
/// column = post-synaptic; an edge listed twice is summed) and `gap` (symmetric: the larger of
/// the weights listed either way). Each file is a CSV edge list with a header naming the
/// pre, post and weight columns (`pre`/`source`/`from`, `post`/`target`/`to`,
/// `weight`/`count`/`synapses`; a 3-column header without neuron names is read in that order)
/// or a square matrix (header row = post-synaptic names, first column = pre-synaptic names).
/// Names are matched to the 302 neurons ignoring case and zero padding (`VA01` = VA1). A graph
/// with the same name is replaced. Source files, their sha256 and every decision (summed
/// repeats, dropped names) are in the graph's metadata.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  neurofm ingest-connectome --chemical chem_edges.csv --gap gap_edges.csv --out stores/worms
  neurofm ingest-connectome --gap gap_matrix.csv --name gap_only --unknown-neurons drop --out stores/worms
  neurofm inspect stores/worms")]
pub struct Args {
    /// Chemical synapses (directed): edge list or square matrix CSV.
    #[arg(long, value_name = "CSV")]
    pub chemical: Option<PathBuf>,
    /// Gap junctions (symmetric): edge list or square matrix CSV.
    #[arg(long, value_name = "CSV")]
    pub gap: Option<PathBuf>,
    /// The store to write (created if missing).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Graph name in the store ([A-Za-z0-9._-]+).
    #[arg(long, default_value = "connectome")]
    pub name: String,
    /// A name that is not one of the 302 neurons: `error` stops, naming the file and the names;
    /// `drop` leaves out the edges that touch it and records the names in the graph metadata
    /// (`report`).
    #[arg(long, value_enum, default_value_t = super::ingest::UnknownNeurons::Error)]
    pub unknown_neurons: super::ingest::UnknownNeurons,
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<()> {
    if args.chemical.is_none() && args.gap.is_none() {
        bail!("give --chemical CSV, --gap CSV, or both");
    }
    let unknown = match args.unknown_neurons {
        super::ingest::UnknownNeurons::Error => neurofm_io::celegans::UnknownNames::Error,
        super::ingest::UnknownNeurons::Drop => neurofm_io::celegans::UnknownNames::Drop,
    };
    let c = neurofm_io::celegans::read_connectome(
        args.chemical.as_deref(),
        args.gap.as_deref(),
        unknown,
    )?;
    let mut metadata = BTreeMap::new();
    for (key, p) in [("chemical", &args.chemical), ("gap", &args.gap)] {
        if let Some(p) = p {
            let sha = neurofm_io::sha256_file(p)?;
            metadata.insert(
                key.to_string(),
                serde_json::json!({ "source_path": p.display().to_string(), "source_sha256": sha }),
            );
        }
    }
    let edges = |m: &[f32]| m.iter().filter(|&&w| w != 0.0).count();
    let d = diag(&c.gap);
    let (n_chem, n_gap) = (edges(&c.chemical), (edges(&c.gap) - d) / 2 + d);
    metadata.insert("chemical_edges".into(), Value::from(n_chem));
    metadata.insert("gap_pairs".into(), Value::from(n_gap));
    let mut store = Store::open_or_create(&args.out)
        .with_context(|| format!("opening store {}", args.out.display()))?;
    neurofm_data::calcium::add_connectome(&mut store, &args.name, &c, metadata)
        .with_context(|| format!("writing graph `{}` to {}", args.name, args.out.display()))?;
    if !global.quiet {
        eprintln!(
            "{}: graph `{}` over {} neurons: {n_chem} chemical edges, {n_gap} gap-junction pairs",
            args.out.display(),
            args.name,
            c.nodes.len()
        );
        for r in &c.report {
            eprintln!("  {r}");
        }
    }
    Ok(())
}

/// Non-zero diagonal entries (self gap junctions count once).
fn diag(m: &[f32]) -> usize {
    let n = (m.len() as f64).sqrt() as usize;
    (0..n)
        .filter(|&i| m.get(i * n + i).is_some_and(|&w| w != 0.0))
        .count()
}
