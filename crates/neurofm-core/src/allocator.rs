//! Process-wide allocator setting for programs that allocate and free large buffers over and
//! over: reading one recording after another (the file's bytes, the decoded samples), or
//! training steps (every activation and gradient tensor of a step).
//!
//! With glibc's defaults, blocks of this size are `mmap`ed and given back to the kernel on
//! `free`, so each file or step pays for fresh pages again: a page fault and a kernel zeroing
//! per 4 KiB. [`keep_freed_memory`] tells glibc to serve blocks below 256 MiB from the heap and
//! to keep up to 512 MiB of freed heap, so the next file or step reuses the memory of the last
//! one. Measured (BENCHMARKS.md): on the 28 EEGMAT files (`read_all --jobs 2`) page faults fall
//! from ~13 000 to ~5 900 and the CPU time by ~15%. For training steps of the MAE the gain was
//! within the machine's noise (0–20% across runs); the page faults once blamed on the allocator
//! there (30% of a tiny step's CPU time) came from a leak in the benchmark, since fixed (about
//! 56 faults per step remain).
//!
//! The cost: memory freed below that size is kept by the process (its peak RSS is unchanged,
//! but RSS does not shrink after the peak). It is a process-wide setting, so only binaries call
//! it (the `neurofm` CLI does, at start); the libraries never change it by themselves.

/// Keeps freed memory in the process for reuse (glibc `mallopt`; no effect elsewhere).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: `mallopt` only changes glibc's allocation thresholds; both values are in the
        // ranges glibc accepts (it returns 0 and changes nothing otherwise), and changing them
        // is allowed at any time, from any thread.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 << 20);
            mallopt(M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}
