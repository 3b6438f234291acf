//! Process-wide thread setting for programs that train on the CPU with candle.
//!
//! candle 0.11 runs its element-wise operations on tensors of 64 Ki elements or more (adds,
//! multiplies, unary maps: in a training step of the MAE the embedding sums, the loss and the
//! gradient sums of its backward pass) on a thread pool of its own, beside rayon's global pool
//! that neurofm's fused kernels use: one thread fewer than the core count, plus the calling
//! thread. After each such operation those threads spin (25 000 rounds) before they sleep, on
//! the cores rayon's workers need for the next kernel. With [`candle_elementwise_on_caller`]
//! candle's pool has no threads of its own and those operations run on the calling thread; the
//! matrix products, attention, normalization and optimizer keep all cores through rayon.
//!
//! Measured on the 2-core benchmark machine (BENCHMARKS.md, "Train step"): the tiny MAE's step
//! 7% faster, the base MAE's unchanged within the machine's noise.
//!
//! It is a process-wide setting (an environment variable candle reads once, when it first
//! needs the pool), so only binaries set it, first thing in `main`; a `CANDLE_NUM_THREADS`
//! already in the environment is left as it is.

/// Sets `CANDLE_NUM_THREADS=1` unless the environment already has a value.
///
/// Call it at the start of `main`, before any thread is started: changing the environment
/// while another thread reads it is not allowed.
pub fn candle_elementwise_on_caller() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_the_variable_once_and_keeps_a_given_value() {
        // One test touches the variable, so no other test in this binary races on it.
        std::env::remove_var("CANDLE_NUM_THREADS");
        candle_elementwise_on_caller();
        assert_eq!(std::env::var("CANDLE_NUM_THREADS").as_deref(), Ok("1"));
        std::env::set_var("CANDLE_NUM_THREADS", "3");
        candle_elementwise_on_caller();
        assert_eq!(std::env::var("CANDLE_NUM_THREADS").as_deref(), Ok("3"));
        std::env::remove_var("CANDLE_NUM_THREADS");
    }
}
