//! EDF+/BDF+ Time-stamped Annotation Lists (TALs), parsed as MNE 1.13 parses them.
//!
//! MNE concatenates the bytes of every annotation channel, decodes them as UTF-8 and finds every
//! match of `([+-]\d+\.?\d*)(\x15(\d+\.?\d*))?(\x14.*?)\x14\x00`. Each non-empty `\x14`-separated
//! text of a match is an annotation at `onset + offset`; the first match's empty text (the
//! time-keeping TAL of the first record) sets `offset = -onset`, so that onsets count from the
//! first sample even when the recording starts a fraction of a second after the header's start
//! time. A text `desc@@channel` naming a channel is a channel-specific annotation: MNE keeps
//! `desc` (and the channel list); we keep `desc` and merge duplicates the same way.

use neurofm_core::Annotation;

/// One regex match: onset text, optional duration text, the text after the first `\x14`.
#[derive(Debug, PartialEq)]
pub(crate) struct Tal<'a> {
    pub onset: &'a str,
    pub duration: Option<&'a str>,
    /// Everything between the first `\x14` and the closing `\x14\x00`, starting with `\x14`.
    pub texts: &'a str,
}

/// Matches `\d+\.?\d*` at `i`; returns the end.
fn number(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == i {
        return None;
    }
    if j < b.len() && b[j] == b'.' {
        j += 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    Some(j)
}

/// Tries the TAL pattern at byte `i` of `s`; returns the match and its end.
fn match_at(s: &str, i: usize) -> Option<(Tal<'_>, usize)> {
    let b = s.as_bytes();
    if !matches!(b.get(i), Some(b'+') | Some(b'-')) {
        return None;
    }
    let onset_end = number(b, i + 1)?;
    let mut j = onset_end;
    let mut duration = None;
    if b.get(j) == Some(&0x15) {
        if let Some(e) = number(b, j + 1) {
            duration = Some(&s[j + 1..e]);
            j = e;
        }
    }
    if b.get(j) != Some(&0x14) {
        return None;
    }
    // lazy `.*?` (no newline) up to the first "\x14\x00"
    let text_start = j;
    let mut k = j + 1;
    loop {
        if k + 1 < b.len() && b[k] == 0x14 && b[k + 1] == 0 {
            break;
        }
        if k >= b.len() || b[k] == b'\n' {
            return None;
        }
        k += 1;
    }
    Some((
        Tal {
            onset: &s[i..onset_end],
            duration,
            texts: &s[text_start..k],
        },
        k + 2,
    ))
}

/// All non-overlapping TAL matches, leftmost first (Python's `re.findall`).
pub(crate) fn find_tals(s: &str) -> Vec<Tal<'_>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some((tal, end)) = match_at(s, i) {
            out.push(tal);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Parsed annotations plus the offset (seconds) of the first sample after the header start
/// time (the first TAL's onset; 0 when there is none).
pub(crate) struct ParsedTals {
    pub annotations: Vec<Annotation>,
    pub first_onset: f64,
}

/// Parses concatenated annotation-channel bytes as MNE's `_read_annotations_edf` does.
pub(crate) fn parse_tals(bytes: &[u8], ch_names: &[String]) -> ParsedTals {
    let text = String::from_utf8_lossy(bytes);
    let tals = find_tals(&text);
    let mut offset = 0.0;
    let mut first_onset = 0.0;
    // (onset, duration, description) in insertion order; channel-specific duplicates merge
    let mut events: Vec<(f64, f64, String)> = Vec::new();
    let mut channel_keys: Vec<(f64, f64, String)> = Vec::new();
    for (k, tal) in tals.iter().enumerate() {
        let raw_onset: f64 = tal.onset.parse().unwrap_or(f64::NAN);
        if !raw_onset.is_finite() {
            continue;
        }
        let onset = raw_onset + offset;
        let duration: f64 = tal.duration.and_then(|d| d.parse().ok()).unwrap_or(0.0);
        for desc in tal.texts.split('\x14').skip(1) {
            if !desc.is_empty() {
                let (desc, is_channel) = match desc.split_once("@@") {
                    Some((d, ch)) if ch_names.iter().any(|c| c == ch) => (d, true),
                    _ => (desc, false),
                };
                let key = (onset, duration, desc.to_string());
                if is_channel {
                    if channel_keys.contains(&key) {
                        continue;
                    }
                    channel_keys.push(key.clone());
                }
                events.push(key);
            } else if k == 0 {
                offset = -onset;
                first_onset = raw_onset;
            }
        }
    }
    let annotations = events
        .into_iter()
        .map(|(onset_s, duration_s, description)| Annotation {
            onset_s,
            duration_s,
            description,
        })
        .collect();
    ParsedTals {
        annotations,
        first_onset,
    }
}

/// The onset of the first TAL in one record's annotation bytes (the record's start time).
pub(crate) fn record_onset(bytes: &[u8]) -> Option<f64> {
    let text = String::from_utf8_lossy(bytes);
    let tals = find_tals(&text);
    tals.first().and_then(|t| t.onset.parse().ok())
}

/// MNE's `raw.set_annotations` for annotations relative to the first sample: drops those
/// entirely outside `[0, end_s]`, clips those that stick out, rounds onsets (and clipped
/// durations) to microseconds (Python `timedelta`), and sorts by onset (stable).
pub(crate) fn crop_like_mne(anns: Vec<Annotation>, end_s: f64) -> Vec<Annotation> {
    let us = |x: f64| (x * 1e6).round_ties_even() / 1e6;
    let end_us = us(end_s);
    let mut out: Vec<Annotation> = Vec::new();
    for a in anns {
        let dur = if a.duration_s.is_nan() {
            0.0
        } else {
            a.duration_s
        };
        let on = us(a.onset_s);
        let off = us(a.onset_s + dur);
        if on > end_us || off < 0.0 {
            continue;
        }
        let clip_left = on < 0.0;
        let clip_right = off > end_us;
        let on2 = if clip_left { 0.0 } else { on };
        let off2 = if clip_right { end_us } else { off };
        let duration_s = if clip_left || clip_right {
            us(off2 - on2)
        } else {
            dur
        };
        out.push(Annotation {
            onset_s: on2,
            duration_s,
            description: a.description,
        });
    }
    out.sort_by(|a, b| a.onset_s.total_cmp(&b.onset_s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timekeeping_sets_offset() {
        let bytes = b"+0.5\x14\x14\x00\x00\x00+1.5\x150.25\x14T1\x14\x00+2\x14A\x14B\x14\x00";
        let p = parse_tals(bytes, &[]);
        assert_eq!(p.first_onset, 0.5);
        let got: Vec<_> = p
            .annotations
            .iter()
            .map(|a| (a.onset_s, a.duration_s, a.description.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![(1.0, 0.25, "T1"), (1.5, 0.0, "A"), (1.5, 0.0, "B")]
        );
    }

    #[test]
    fn utf8_and_channel_specific() {
        let bytes =
            "+0\x14\x14\x00+1\x14Spindel \u{00e9}\u{4e2d}\x14\x00+2\x14x@@Cz\x14\x00".as_bytes();
        let p = parse_tals(bytes, &["Cz".to_string()]);
        assert_eq!(p.annotations[0].description, "Spindel \u{00e9}\u{4e2d}");
        assert_eq!(p.annotations[1].description, "x");
    }

    #[test]
    fn garbage_does_not_match() {
        assert!(find_tals("+\x14x\x14\x00").is_empty());
        assert!(find_tals("+1\x14no end").is_empty());
        assert!(find_tals("").is_empty());
        assert!(find_tals("+1\x15\x14a\x14\x00").is_empty());
    }

    #[test]
    fn crop_drops_and_clips() {
        let a = |o: f64, d: f64| Annotation {
            onset_s: o,
            duration_s: d,
            description: "x".into(),
        };
        let got = crop_like_mne(
            vec![a(5.0, 1.0), a(-1.0, 2.0), a(9.5, 2.0), a(11.0, 0.0)],
            10.0,
        );
        let got: Vec<_> = got.iter().map(|a| (a.onset_s, a.duration_s)).collect();
        assert_eq!(got, vec![(0.0, 1.0), (5.0, 1.0), (9.5, 0.5)]);
    }
}
