//! The one place where the vendor readers (BrainVision, EEGLAB, FIF, BIDS) apply the channel-name
//! contract (`neurofm_core::channels`): EEG channels whose names map to a 10-05 electrode get
//! `standard_name` and `position`; the others are kept and listed in
//! `metadata["channels.nonstandard"]`, as the EDF/BDF/GDF readers do. A position the file itself
//! gives is kept.

use std::collections::BTreeMap;

use neurofm_core::channels::apply_contract;
use neurofm_core::ChannelInfo;

/// Applies the channel contract to `channels`, recording non-standard EEG names in `metadata`.
pub(crate) fn standardize_channels(
    channels: &mut [ChannelInfo],
    metadata: &mut BTreeMap<String, String>,
) {
    // Positions the file gives (FIF digitization) win over the standard montage.
    let own: Vec<Option<[f64; 3]>> = channels.iter().map(|c| c.position).collect();
    let nonstandard = apply_contract(channels);
    for (c, p) in channels.iter_mut().zip(own) {
        if p.is_some() {
            c.position = p;
        }
    }
    if !nonstandard.is_empty() {
        metadata.insert("channels.nonstandard".into(), nonstandard.join("; "));
    }
}
