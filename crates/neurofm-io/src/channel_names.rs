//! The one place where the vendor readers (BrainVision, EEGLAB, FIF, BIDS) ask for a channel's
//! standard name.
//!
//! The channel-name contract (`neurofm_core::channels::standardize`) is written on another
//! branch; until it is merged this adapter standardizes nothing and every reader leaves
//! `standard_name` as `None`. When it lands, the body of [`standard_name`] becomes a call to it.

use neurofm_core::ChannelKind;

/// The standard name of a channel called `name` of kind `kind`, when one is known.
pub(crate) fn standard_name(name: &str, kind: ChannelKind) -> Option<String> {
    let _ = (name, kind);
    None
}
