//! Byte-pair-encoding merges over a quantized token stream ("Neural Machine Translation of
//! Rare Words with Subword Units", Sennrich et al., ACL 2016), trained with the Hugging Face
//! `tokenizers` BPE trainer.
//!
//! Quantization level `q` is written as the character U+E000 + q (Unicode private use area),
//! each channel's level stream is cut into words of `word_len` levels, and BPE learns merges
//! of frequent level sequences. Encoding and decoding are exact on the level stream: the
//! merges only shorten it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::{Model, Trainer};

use crate::error::{check, TokenizeError};

/// First character of the level alphabet.
const BASE: u32 = 0xE000;
/// Most levels the alphabet can hold (size of the private use area U+E000..U+F8FF).
pub const MAX_LEVELS: usize = 6400;

fn level_char(q: u32) -> Option<char> {
    char::from_u32(BASE + q)
}

fn bpe_err(e: impl std::fmt::Display) -> TokenizeError {
    TokenizeError::Bpe(e.to_string())
}

/// Learned BPE merges over `levels` quantization levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BpeStage {
    /// Number of quantization levels (the base alphabet).
    pub levels: usize,
    /// Levels per BPE word (merges never cross a word boundary).
    pub word_len: usize,
    /// The Hugging Face BPE model (vocabulary and merges).
    pub model: BPE,
}

impl BpeStage {
    /// Learns merges up to a vocabulary of `vocab_size` tokens from level streams.
    pub fn train<'a>(
        streams: impl Iterator<Item = &'a [u32]>,
        levels: usize,
        vocab_size: usize,
        word_len: usize,
    ) -> Result<Self, TokenizeError> {
        check((2..=MAX_LEVELS).contains(&levels), "levels", || {
            format!("BPE needs 2..={MAX_LEVELS} levels, got {levels}")
        })?;
        check(vocab_size >= levels, "bpe_vocab_size", || {
            format!("must be >= levels ({levels}), got {vocab_size}")
        })?;
        check(word_len >= 2, "bpe_word_len", || {
            format!("must be >= 2, got {word_len}")
        })?;
        let alphabet: HashSet<char> = (0..levels as u32).filter_map(level_char).collect();
        let mut words = Vec::new();
        for s in streams {
            for chunk in s.chunks(word_len) {
                words.push(Self::to_text(chunk, levels)?);
            }
        }
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(alphabet)
            .build();
        trainer
            .feed(words.iter(), |w| Ok(vec![w.to_owned()]))
            .map_err(bpe_err)?;
        let mut model = BPE::default();
        trainer.train(&mut model).map_err(bpe_err)?;
        Ok(Self {
            levels,
            word_len,
            model,
        })
    }

    fn to_text(levels: &[u32], n_levels: usize) -> Result<String, TokenizeError> {
        levels
            .iter()
            .map(|&q| {
                if (q as usize) < n_levels {
                    level_char(q)
                } else {
                    None
                }
                .ok_or_else(|| TokenizeError::Input(format!("level {q} outside 0..{n_levels}")))
            })
            .collect()
    }

    /// Number of BPE tokens.
    pub fn vocab_size(&self) -> usize {
        self.model.get_vocab_size()
    }

    /// BPE token ids of a level stream.
    pub fn encode(&self, levels: &[u32]) -> Result<Vec<u32>, TokenizeError> {
        let mut out = Vec::with_capacity(levels.len() / 2 + 1);
        for chunk in levels.chunks(self.word_len) {
            let text = Self::to_text(chunk, self.levels)?;
            out.extend(
                self.model
                    .tokenize(&text)
                    .map_err(bpe_err)?
                    .into_iter()
                    .map(|t| t.id),
            );
        }
        Ok(out)
    }

    /// The level stream of BPE token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u32>, TokenizeError> {
        let mut out = Vec::with_capacity(ids.len() * 2);
        for &id in ids {
            let s = self.model.id_to_token(id).ok_or_else(|| {
                TokenizeError::Input(format!("BPE token id {id} not in the vocabulary"))
            })?;
            for c in s.chars() {
                let q = (c as u32).wrapping_sub(BASE);
                if q as usize >= self.levels {
                    return Err(TokenizeError::Bpe(format!(
                        "token {id} holds a non-level character {c:?}"
                    )));
                }
                out.push(q);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpe_round_trips_and_compresses() -> Result<(), TokenizeError> {
        // A repetitive level stream: BPE must learn merges and shorten it.
        let pattern = [3u32, 7, 7, 1, 0, 5, 3, 7];
        let stream: Vec<u32> = pattern.iter().copied().cycle().take(4000).collect();
        let other: Vec<u32> = (0..997u32).map(|i| (i * 7 + i / 3) % 16).collect();
        let bpe = BpeStage::train([&stream[..], &other[..]].into_iter(), 16, 64, 32)?;
        assert!(
            bpe.vocab_size() > 16 && bpe.vocab_size() <= 64,
            "{}",
            bpe.vocab_size()
        );
        for s in [&stream[..], &other[..]] {
            let ids = bpe.encode(s)?;
            assert_eq!(bpe.decode(&ids)?, s);
            if s.len() == stream.len() {
                assert!(
                    ids.len() * 3 < s.len(),
                    "{} tokens for {} levels",
                    ids.len(),
                    s.len()
                );
            }
        }
        // Serde round trip.
        let j = serde_json::to_string(&bpe).map_err(bpe_err)?;
        let back: BpeStage = serde_json::from_str(&j).map_err(bpe_err)?;
        assert_eq!(back.encode(&stream)?, bpe.encode(&stream)?);
        assert!(bpe.encode(&[16]).is_err());
        assert!(bpe.decode(&[100_000]).is_err());
        Ok(())
    }
}
