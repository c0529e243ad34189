//! Intensity normalisation to the networks' [-1, 1] range and back to scanner units.
//!
//! Statistics come from the foreground (voxels that are not exactly 0, the brain in
//! skull-stripped data). The fitted parameters are kept (and stored with a model), so a
//! prediction can be mapped back into the target modality's units.

use serde::{Deserialize, Serialize};

use super::error::{DataError, DataResult};
use super::volume::Volume;

/// How to normalise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormMethod {
    /// Clip the foreground to its `low` / `high` percentiles (0-100, numpy's linear
    /// interpolation), then scale linearly to [-1, 1]. Background maps to -1.
    Percentile { low: f64, high: f64 },
    /// (v - mean) / std over the foreground; background stays 0. No clipping.
    ZScore,
}

impl Default for NormMethod {
    /// Percentiles 0.5 / 99.5 of the foreground.
    fn default() -> Self {
        NormMethod::Percentile {
            low: 0.5,
            high: 99.5,
        }
    }
}

/// Fitted normalisation of one volume.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Normalizer {
    /// Foreground `[lo, hi]` -> [-1, 1].
    Percentile {
        lo: f32,
        hi: f32,
    },
    ZScore {
        mean: f32,
        std: f32,
    },
}

/// The `q`-th percentile (0-100) of `values`, numpy's default (linear) interpolation.
/// Reorders `values`.
pub fn percentile(values: &mut [f32], q: f64) -> f32 {
    let rank = q / 100.0 * (values.len() - 1) as f64;
    let below = rank.floor() as usize;
    let (_, &mut lo, rest) = values.select_nth_unstable_by(below, f32::total_cmp);
    let frac = rank - below as f64;
    if frac == 0.0 || rest.is_empty() {
        return lo;
    }
    let hi = rest.iter().copied().fold(f32::INFINITY, f32::min);
    (lo as f64 + frac * (hi as f64 - lo as f64)) as f32
}

impl Normalizer {
    /// Fits `method` on the foreground of `vol`.
    pub fn fit(vol: &Volume, method: NormMethod) -> DataResult<Normalizer> {
        let mut fg: Vec<f32> = vol.data.iter().copied().filter(|&v| v != 0.0).collect();
        let src = &vol.meta.source;
        if fg.len() < 2 {
            return Err(DataError::invalid(
                src,
                "has no foreground (non-zero) voxels to normalise",
            ));
        }
        let fitted = match method {
            NormMethod::Percentile { low, high } => {
                if !(0.0..=100.0).contains(&low) || !(0.0..=100.0).contains(&high) || low >= high {
                    return Err(DataError::Mismatch(format!(
                        "percentiles must satisfy 0 <= low < high <= 100, got {low} / {high}"
                    )));
                }
                let lo = percentile(&mut fg, low);
                let hi = percentile(&mut fg, high);
                Normalizer::Percentile { lo, hi }
            }
            NormMethod::ZScore => {
                let n = fg.len() as f64;
                let mean = fg.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = fg.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                Normalizer::ZScore {
                    mean: mean as f32,
                    std: var.sqrt() as f32,
                }
            }
        };
        let degenerate = match fitted {
            Normalizer::Percentile { lo, hi } => hi <= lo,
            Normalizer::ZScore { std, .. } => std <= 0.0,
        };
        if degenerate {
            return Err(DataError::invalid(
                src,
                "foreground intensities are constant: nothing to normalise",
            ));
        }
        Ok(fitted)
    }

    /// The mean of several fitted normalisers of one kind (parameter by parameter): the
    /// training set's typical mapping, used to bring predictions back to intensity units.
    pub fn average(all: &[Normalizer]) -> Option<Normalizer> {
        let n = all.len() as f32;
        match all.first()? {
            Normalizer::Percentile { .. } => {
                let (mut lo, mut hi) = (0.0, 0.0);
                for x in all {
                    let Normalizer::Percentile { lo: l, hi: h } = x else {
                        return None;
                    };
                    (lo, hi) = (lo + l / n, hi + h / n);
                }
                Some(Normalizer::Percentile { lo, hi })
            }
            Normalizer::ZScore { .. } => {
                let (mut mean, mut std) = (0.0, 0.0);
                for x in all {
                    let Normalizer::ZScore { mean: m, std: s } = x else {
                        return None;
                    };
                    (mean, std) = (mean + m / n, std + s / n);
                }
                Some(Normalizer::ZScore { mean, std })
            }
        }
    }

    /// The value background voxels take after [`Self::apply`].
    pub fn background(&self) -> f32 {
        match self {
            Normalizer::Percentile { .. } => -1.0,
            Normalizer::ZScore { .. } => 0.0,
        }
    }

    /// Normalises every voxel; voxels that are exactly 0 are background.
    pub fn apply(&self, data: &[f32]) -> Vec<f32> {
        data.iter()
            .map(|&v| {
                if v == 0.0 {
                    return self.background();
                }
                match *self {
                    Normalizer::Percentile { lo, hi } => {
                        2.0 * (v.clamp(lo, hi) - lo) / (hi - lo) - 1.0
                    }
                    Normalizer::ZScore { mean, std } => (v - mean) / std,
                }
            })
            .collect()
    }

    /// Maps normalised values back to intensity units. Where `foreground` is given and false,
    /// the result is 0 (background stays background).
    pub fn invert(&self, x: &[f32], foreground: Option<&[bool]>) -> Vec<f32> {
        x.iter()
            .enumerate()
            .map(|(i, &y)| {
                if foreground.is_some_and(|m| !m[i]) {
                    return 0.0;
                }
                match *self {
                    Normalizer::Percentile { lo, hi } => lo + (y + 1.0) / 2.0 * (hi - lo),
                    Normalizer::ZScore { mean, std } => y * std + mean,
                }
            })
            .collect()
    }
}
