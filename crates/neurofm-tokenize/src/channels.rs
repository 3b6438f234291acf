//! Channel ids for models: the index of a channel's standard 10-05 name in
//! `neurofm_core::channels::STANDARD_1005` (MNE's `standard_1005` montage order), or one
//! "unknown" slot after the table for channels that have no standard name.

use neurofm_core::channels::{standardize, STANDARD_1005};

/// Number of entries in the 10-05 table.
pub fn n_standard() -> usize {
    STANDARD_1005.len()
}

/// Channel id given to channels outside the table (one slot after the table).
pub fn unknown_channel() -> u32 {
    STANDARD_1005.len() as u32
}

/// Number of channel embedding slots a model needs: the table plus the unknown slot.
pub fn n_channel_ids() -> usize {
    STANDARD_1005.len() + 1
}

/// Index of `name` in the 10-05 table after standardization (case, `EEG ` prefix,
/// reference suffix, trailing dots, old T3/T4/T5/T6 names: see
/// `neurofm_core::channels::standardize`).
pub fn standard_index(name: &str) -> Option<u32> {
    let std = standardize(name)?;
    STANDARD_1005
        .iter()
        .position(|(n, _)| *n == std)
        .map(|i| i as u32)
}

/// Channel id for a model: the table index, or [`unknown_channel`].
pub fn channel_id(name: &str) -> u32 {
    standard_index(name).unwrap_or_else(unknown_channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_core_table() {
        let cz = standard_index("Cz");
        assert!(cz.is_some());
        assert_eq!(standard_index("CZ"), cz);
        assert_eq!(standard_index("Cz.."), cz);
        assert_eq!(standard_index("EEG Cz-REF"), cz);
        assert_eq!(standard_index("Fc5."), standard_index("FC5"));
        assert_eq!(standard_index("T3"), standard_index("T7"));
        assert_eq!(standard_index("STI 014"), None);
        assert_eq!(channel_id("ECG"), unknown_channel());
        assert_eq!(n_channel_ids(), n_standard() + 1);
        for (i, (n, _)) in STANDARD_1005.iter().enumerate() {
            let id = channel_id(n);
            // aliases (T3 -> T7) resolve to their modern name; every other entry to itself
            if standardize(n) == Some(*n) {
                assert_eq!(id, i as u32, "{n}");
            }
        }
    }
}
