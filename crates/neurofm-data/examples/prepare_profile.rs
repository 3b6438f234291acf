//! Times each step of a recipe over every recording of a store and prints, per step, the CPU time
//! of all the process's threads (Linux: `/proc/self/task/*/schedstat`), best of REPEATS runs.
//! Usage: `prepare_profile RECIPE STORE [REPEATS]` (`RAYON_NUM_THREADS=1` for one thread).

use std::path::Path;

/// CPU seconds used so far by every thread of this process.
fn cpu_s() -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 * 1e-9
}

use neurofm_data::{Recipe, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: prepare_profile RECIPE STORE [REPEATS]".into());
    }
    let recipe = Recipe::from_path(Path::new(&args[1]))?;
    let store = Store::open(Path::new(&args[2]))?;
    let repeats: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let mut per_step = vec![f64::INFINITY; recipe.steps.len()];
    let mut read_best = f64::INFINITY;
    for _ in 0..repeats {
        let mut this = vec![0.0; recipe.steps.len()];
        let mut read = 0.0;
        for e in store.entries() {
            let t = cpu_s();
            let mut rec = store.read_recording(&e.id)?;
            read += cpu_s() - t;
            for (i, s) in recipe.steps.iter().enumerate() {
                let t = cpu_s();
                rec = s.apply(rec)?.0;
                this[i] += cpu_s() - t;
            }
        }
        read_best = read_best.min(read);
        for (b, t) in per_step.iter_mut().zip(this) {
            *b = b.min(t);
        }
    }
    println!("{:<12} {:>8.3} s", "read", read_best);
    for (s, t) in recipe.steps.iter().zip(per_step) {
        println!("{:<12} {:>8.3} s", s.name(), t);
    }
    Ok(())
}
