//! The channel contract: standard 10-05 names and positions, name standardization and kind
//! guessing.
//!
//! Every reader passes the channel names it finds in a file through [`standardize`]; names that
//! map to a 10-05 electrode get `standard_name` and `position` filled, all others are kept as
//! they are (never dropped) and listed by [`apply_contract`].
//!
//! The positions come from MNE's `make_standard_montage('standard_1005')`, moved to head
//! coordinates (metres), generated into `standard_1005.rs` by `scripts/gen/standard_1005.py`.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::recording::{ChannelInfo, ChannelKind};

#[path = "standard_1005.rs"]
mod table;

pub use table::STANDARD_1005;

/// Old 10-20 names and the 10-05 names they stand for.
const ALIASES: &[(&str, &str)] = &[("T3", "T7"), ("T4", "T8"), ("T5", "P7"), ("T6", "P8")];

/// Reference suffixes stripped from referential channel names (`Fp1-REF`, `C3-LE`, `O1-A1`).
const REF_SUFFIXES: &[&str] = &["-ref", "-le", "-a1", "-a2", "-m1", "-m2", "-avg", "-ar"];

/// Ear / mastoid reference electrodes: `A2-A1` is a bipolar reference channel, not `A2`.
const REFERENCE_ELECTRODES: &[&str] = &["a1", "a2", "m1", "m2"];

fn lookup() -> &'static HashMap<String, usize> {
    static MAP: OnceLock<HashMap<String, usize>> = OnceLock::new();
    MAP.get_or_init(|| {
        STANDARD_1005
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.to_ascii_lowercase(), i))
            .collect()
    })
}

/// Case-insensitive exact lookup in the 10-05 table (no aliasing, no cleaning).
fn table_entry(name: &str) -> Option<(&'static str, [f64; 3])> {
    let i = *lookup().get(&name.to_ascii_lowercase())?;
    STANDARD_1005.get(i).copied()
}

/// Strips what files add around an electrode name: surrounding blanks, an `EEG ` type prefix,
/// EEGMMIDB-style trailing dots (`Fc5.`, `C3..`) and a reference suffix (`-REF`, `-Ref`, `-LE`,
/// `-A1`, ...). Returns the bare stem (possibly not a 10-05 name).
pub fn clean_name(name: &str) -> &str {
    let mut s = name.trim();
    if let (Some(head), Some(rest)) = (s.get(..4), s.get(4..)) {
        if head.eq_ignore_ascii_case("eeg ") && !rest.is_empty() {
            s = rest.trim_start();
        }
    }
    s = s.trim_end_matches('.').trim_end();
    let lower = s.to_ascii_lowercase();
    for suf in REF_SUFFIXES {
        if lower.len() > suf.len() && lower.ends_with(suf) {
            let stem = &s[..s.len() - suf.len()];
            let suffix_is_electrode = REFERENCE_ELECTRODES.contains(&&suf[1..]);
            let stem_is_reference =
                REFERENCE_ELECTRODES.contains(&stem.to_ascii_lowercase().as_str());
            if !(suffix_is_electrode && stem_is_reference) {
                return stem.trim_end();
            }
        }
    }
    s
}

/// The standard 10-05 name a file's channel name stands for, if any.
///
/// Case-insensitive; strips `EEG ` prefixes, reference suffixes and trailing dots (see
/// [`clean_name`]); maps the old names T3/T4/T5/T6 to T7/T8/P7/P8.
pub fn standardize(name: &str) -> Option<&'static str> {
    let stem = clean_name(name);
    if stem.is_empty() {
        return None;
    }
    for (old, new) in ALIASES {
        if stem.eq_ignore_ascii_case(old) {
            return table_entry(new).map(|(n, _)| n);
        }
    }
    table_entry(stem).map(|(n, _)| n)
}

/// Position (metres, head coordinates) of a standard 10-05 name (exact table spelling or any
/// case).
pub fn position(standard_name: &str) -> Option<[f64; 3]> {
    table_entry(standard_name).map(|(_, p)| p)
}

/// Guesses a non-EEG channel kind from a name: EOG, ECG/EKG, EMG, respiration, and stimulus
/// channels (`Status`, `Trigger`, `STI 014`, `STI101`). `None` when the name says nothing.
pub fn guess_kind(name: &str) -> Option<ChannelKind> {
    let lower = name.trim().to_ascii_lowercase();
    let first = lower.split([' ', '-', '_']).next().unwrap_or("");
    let sti_number = lower
        .strip_prefix("sti")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
    if lower == "status" || lower == "trigger" || first == "sti" || sti_number {
        return Some(ChannelKind::Stim);
    }
    if lower.contains("eog") {
        return Some(ChannelKind::Eog);
    }
    if lower.contains("ecg") || lower.contains("ekg") {
        return Some(ChannelKind::Ecg);
    }
    if lower.contains("emg") {
        return Some(ChannelKind::Emg);
    }
    if first == "resp" || lower.starts_with("resp") {
        return Some(ChannelKind::Resp);
    }
    None
}

/// Fills `standard_name` and `position` of every channel whose name maps to a 10-05 electrode
/// (channels of kind EEG only: an ECG lead named `ECG` keeps no position). Returns the names of
/// EEG channels that did not map, in order; those channels are kept unchanged.
pub fn apply_contract(channels: &mut [ChannelInfo]) -> Vec<String> {
    let mut unknown = Vec::new();
    for ch in channels.iter_mut() {
        if ch.kind != ChannelKind::Eeg {
            continue;
        }
        match standardize(&ch.name) {
            Some(std_name) => {
                ch.standard_name = Some(std_name.to_string());
                ch.position = position(std_name);
            }
            None => unknown.push(ch.name.clone()),
        }
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::recording::Unit;

    #[test]
    fn non_ascii_prefixes_are_kept() {
        assert_eq!(clean_name("EEG\u{ff}001"), "EEG\u{ff}001");
        assert_eq!(standardize("C\u{e9}z"), None);
    }

    #[test]
    fn table_has_1005_names_in_metres() {
        assert!(STANDARD_1005.len() > 300);
        let cz = position("Cz").unwrap();
        // Cz sits on top of the head, ~10 cm above the origin, within a head-sized sphere.
        assert!(cz[2] > 0.05 && cz[2] < 0.2, "{cz:?}");
        for (n, p) in STANDARD_1005 {
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            assert!(r > 0.02 && r < 0.2, "{n} at {r} m");
        }
    }

    #[test]
    fn case_insensitive() {
        assert_eq!(standardize("FP1"), Some("Fp1"));
        assert_eq!(standardize("fcz"), Some("FCz"));
        assert_eq!(standardize("cz"), Some("Cz"));
    }

    #[test]
    fn eeg_prefix() {
        assert_eq!(standardize("EEG Fp1"), Some("Fp1"));
        assert_eq!(standardize("eeg  O2"), Some("O2"));
    }

    #[test]
    fn reference_suffixes() {
        assert_eq!(standardize("EEG Fp1-REF"), Some("Fp1"));
        assert_eq!(standardize("EEG Fp2-Ref"), Some("Fp2"));
        assert_eq!(standardize("C3-LE"), Some("C3"));
        assert_eq!(standardize("O1-A1"), Some("O1"));
        assert_eq!(standardize("EEG A1-Ref"), Some("A1"));
        // a bipolar channel between the two ear references is not the A2 electrode
        assert_eq!(standardize("EEG A2-A1"), None);
    }

    #[test]
    fn eegmmidb_trailing_dots() {
        assert_eq!(standardize("Fc5."), Some("FC5"));
        assert_eq!(standardize("C3.."), Some("C3"));
        assert_eq!(standardize("Fcz."), Some("FCz"));
        assert_eq!(standardize("T10."), Some("T10"));
        assert_eq!(standardize("Iz.."), Some("Iz"));
    }

    #[test]
    fn old_names_alias_new_ones() {
        assert_eq!(standardize("T3"), Some("T7"));
        assert_eq!(standardize("EEG T4"), Some("T8"));
        assert_eq!(standardize("t5"), Some("P7"));
        assert_eq!(standardize("T6-REF"), Some("P8"));
        assert_eq!(position("T7"), position(standardize("T3").unwrap()));
    }

    #[test]
    fn non_ascii_names_do_not_panic() {
        assert_eq!(standardize("\u{ff}\u{ff}\u{ff}"), None);
        assert_eq!(standardize("EE\u{e9}x-ref"), None);
        assert_eq!(standardize("\u{3bc}V-\u{e9}"), None);
    }

    #[test]
    fn unknown_names_are_none() {
        assert_eq!(standardize("POL DC03"), None);
        assert_eq!(standardize("Ergo-Left"), None);
        assert_eq!(standardize(""), None);
        assert_eq!(standardize("EEG "), None);
    }

    #[test]
    fn kinds_from_names() {
        assert_eq!(guess_kind("ECG ECG"), Some(ChannelKind::Ecg));
        assert_eq!(guess_kind("EKG"), Some(ChannelKind::Ecg));
        assert_eq!(guess_kind("HEOG"), Some(ChannelKind::Eog));
        assert_eq!(guess_kind("EOG left"), Some(ChannelKind::Eog));
        assert_eq!(guess_kind("EMG chin"), Some(ChannelKind::Emg));
        assert_eq!(guess_kind("Status"), Some(ChannelKind::Stim));
        assert_eq!(guess_kind("STI 014"), Some(ChannelKind::Stim));
        assert_eq!(guess_kind("STI101"), Some(ChannelKind::Stim));
        assert_eq!(guess_kind("trigger"), Some(ChannelKind::Stim));
        assert_eq!(guess_kind("Resp chest"), Some(ChannelKind::Resp));
        assert_eq!(guess_kind("EEG Fp1"), None);
        assert_eq!(guess_kind("Stim-ish"), None);
    }

    #[test]
    fn contract_fills_and_reports_unknown() {
        let mut chs = vec![
            ChannelInfo::new("EEG T3", ChannelKind::Eeg, Unit::Volt),
            ChannelInfo::new("POL X1", ChannelKind::Eeg, Unit::Volt),
            ChannelInfo::new("ECG", ChannelKind::Ecg, Unit::Volt),
        ];
        let unknown = apply_contract(&mut chs);
        assert_eq!(unknown, vec!["POL X1".to_string()]);
        assert_eq!(chs[0].standard_name.as_deref(), Some("T7"));
        assert_eq!(chs[0].position, position("T7"));
        assert_eq!(chs[0].name, "EEG T3");
        assert_eq!(chs[1].standard_name, None);
        assert_eq!(chs[2].position, None);
        assert_eq!(chs.len(), 3);
    }
}
