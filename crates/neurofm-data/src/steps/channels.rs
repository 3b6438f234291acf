//! Channel selection, ordering and re-referencing.

use neurofm_core::{ChannelInfo, ChannelKind};

/// The standard name of a channel: its `standard_name` when the reader set one, else what
/// `neurofm_core::channels::standardize` makes of the file name (`EEG T3` → `T7`), else the file
/// name without a type prefix or reference suffix.
pub fn standard_name(ch: &ChannelInfo) -> String {
    if let Some(s) = &ch.standard_name {
        return s.clone();
    }
    neurofm_core::channels::standardize(&ch.name)
        .map(str::to_string)
        .unwrap_or_else(|| neurofm_core::channels::clean_name(&ch.name).to_string())
}

/// Index of the channel called `name`: by standard name first, then by the name in the file
/// (both case-insensitive, with old 10-20 aliases accepted).
pub fn find(channels: &[ChannelInfo], name: &str) -> Option<usize> {
    let wanted = standard_name(&ChannelInfo::new(
        name,
        ChannelKind::Misc,
        neurofm_core::Unit::Arbitrary,
    ));
    channels
        .iter()
        .position(|c| standard_name(c).eq_ignore_ascii_case(&wanted))
        .or_else(|| {
            channels
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
        })
}

/// Indices of `names` in order, or the names that are missing.
pub fn find_all(channels: &[ChannelInfo], names: &[String]) -> Result<Vec<usize>, String> {
    let mut idx = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for n in names {
        match find(channels, n) {
            Some(i) => idx.push(i),
            None => missing.push(n.clone()),
        }
    }
    if missing.is_empty() {
        Ok(idx)
    } else {
        Err(format!(
            "the recording has no channel {} (it has: {})",
            missing.join(", "),
            channels
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neurofm_core::Unit;

    #[test]
    fn eegmat_names_map_to_standard() {
        let ch = |n: &str| ChannelInfo::new(n, ChannelKind::Eeg, Unit::Volt);
        assert_eq!(standard_name(&ch("EEG T3")), "T7");
        assert_eq!(standard_name(&ch("EEG Fp1")), "Fp1");
        assert_eq!(standard_name(&ch("EEG A2-A1")), "A2-A1");
        let chans = vec![ch("EEG Fp1"), ch("EEG T3"), ch("ECG ECG")];
        assert_eq!(find(&chans, "T7"), Some(1));
        assert_eq!(find(&chans, "t3"), Some(1));
        assert_eq!(find(&chans, "ECG ECG"), Some(2));
        assert!(find_all(&chans, &["Cz".to_string()]).is_err());
    }
}
