//! Image-quality metrics with scikit-image's semantics (`peak_signal_noise_ratio`,
//! `structural_similarity` at v0.25): PSNR with an explicit data range, SSIM with a uniform
//! or Gaussian window over every axis (2D or 3D), sample covariance and edge cropping, plus
//! MAE and NMSE. Everything is computed in f64.
//!
//! Arrays are given with their `dims` listed fastest-varying first (a volume's [x, y, z], an
//! image's [cols, rows]); the filters are separable and symmetric, so only consistency matters.

use rayon::prelude::*;
use serde::Serialize;

use crate::data::error::{DataError, DataResult};
use crate::data::slices;

/// The SSIM window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    /// A `size`-wide box in every axis (scikit-image's default, 7).
    Uniform(usize),
    /// A Gaussian with this sigma (scikit-image: 1.5), truncated at 3.5 sigma; counted as an
    /// 11-wide window for the covariance correction and the crop, as scikit-image does.
    Gaussian(f64),
}

/// SSIM parameters; `Default` is scikit-image's default apart from the data range, which
/// must always be given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SsimOptions {
    pub window: Window,
    pub k1: f64,
    pub k2: f64,
    /// N / (N - 1) covariance correction (scikit-image's `use_sample_covariance`).
    pub sample_covariance: bool,
    pub data_range: f64,
}

impl SsimOptions {
    pub fn new(data_range: f64) -> Self {
        SsimOptions {
            window: Window::Uniform(7),
            k1: 0.01,
            k2: 0.03,
            sample_covariance: true,
            data_range,
        }
    }
}

fn check_same(a: &[f64], b: &[f64], dims: &[usize]) -> DataResult<()> {
    let n: usize = dims.iter().product();
    if a.len() != n || b.len() != n {
        return Err(DataError::Mismatch(format!(
            "metric inputs have {} and {} values, dims {dims:?} need {n}",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

/// Mean squared error over the elements where `mask` is true (all when None).
pub fn mse(a: &[f64], b: &[f64], mask: Option<&[bool]>) -> f64 {
    let (sum, n) = masked(a, b, mask).fold((0.0, 0usize), |(s, n), (x, y)| {
        (s + (x - y) * (x - y), n + 1)
    });
    sum / n.max(1) as f64
}

/// Mean absolute error.
pub fn mae(a: &[f64], b: &[f64], mask: Option<&[bool]>) -> f64 {
    let (sum, n) =
        masked(a, b, mask).fold((0.0, 0usize), |(s, n), (x, y)| (s + (x - y).abs(), n + 1));
    sum / n.max(1) as f64
}

/// Normalised MSE: sum (pred - real)^2 / sum real^2.
pub fn nmse(pred: &[f64], real: &[f64], mask: Option<&[bool]>) -> f64 {
    let (err, norm) = masked(pred, real, mask).fold((0.0, 0.0), |(e, r), (p, t)| {
        (e + (p - t) * (p - t), r + t * t)
    });
    err / norm
}

fn masked<'a>(
    a: &'a [f64],
    b: &'a [f64],
    mask: Option<&'a [bool]>,
) -> impl Iterator<Item = (f64, f64)> + 'a {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(move |(i, _)| mask.is_none_or(|m| m[*i]))
        .map(|(_, (&x, &y))| (x, y))
}

/// PSNR in dB: 10 log10(R^2 / MSE); +inf for identical inputs.
pub fn psnr(real: &[f64], pred: &[f64], data_range: f64, mask: Option<&[bool]>) -> f64 {
    10.0 * (data_range * data_range / mse(real, pred, mask)).log10()
}

/// scipy.ndimage's 'reflect' boundary (half-sample symmetric): -1 -> 0, n -> n - 1.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - 1 - i;
    }
    i as usize
}

/// 1D filter weights, centred.
fn weights(window: Window) -> Vec<f64> {
    match window {
        Window::Uniform(size) => vec![1.0 / size as f64; size],
        Window::Gaussian(sigma) => {
            let radius = (3.5 * sigma + 0.5) as isize;
            let w: Vec<f64> = (-radius..=radius)
                .map(|k| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp())
                .collect();
            let total: f64 = w.iter().sum();
            w.iter().map(|v| v / total).collect()
        }
    }
}

/// Correlates `x` with `w` along every axis in turn (reflect boundary).
fn filter(x: &[f64], dims: &[usize], w: &[f64]) -> Vec<f64> {
    let radius = (w.len() / 2) as isize;
    let taps = w.len();
    let mut cur = x.to_vec();
    let mut next = vec![0.0; x.len()];
    let mut stride = 1;
    for &n in dims {
        // Source position of every (output position, tap) on this axis.
        let source: Vec<usize> = (0..n)
            .flat_map(|pos| (0..taps).map(move |k| reflect(pos as isize + k as isize - radius, n)))
            .collect();
        next.par_chunks_mut(stride * n)
            .enumerate()
            .for_each(|(block, out)| {
                let src = &cur[block * stride * n..(block + 1) * stride * n];
                for pos in 0..n {
                    let from = &source[pos * taps..(pos + 1) * taps];
                    let dst = &mut out[pos * stride..(pos + 1) * stride];
                    dst.fill(0.0);
                    for (wk, &sp) in w.iter().zip(from) {
                        let line = &src[sp * stride..(sp + 1) * stride];
                        dst.iter_mut().zip(line).for_each(|(d, v)| *d += wk * v);
                    }
                }
            });
        std::mem::swap(&mut cur, &mut next);
        stride *= n;
    }
    cur
}

/// The window width scikit-image uses for the covariance correction and the crop.
fn window_width(window: Window) -> usize {
    match window {
        Window::Uniform(size) => size,
        Window::Gaussian(_) => 11,
    }
}

/// Mean SSIM of two images or volumes (every axis filtered and cropped).
pub fn ssim(a: &[f64], b: &[f64], dims: &[usize], opts: &SsimOptions) -> DataResult<f64> {
    check_same(a, b, dims)?;
    let width = window_width(opts.window);
    if width.is_multiple_of(2) {
        return Err(DataError::Mismatch(format!(
            "SSIM window width must be odd, got {width}"
        )));
    }
    if dims.iter().any(|&d| d < width) {
        return Err(DataError::Mismatch(format!(
            "SSIM window {width} exceeds image extent {dims:?}"
        )));
    }
    let w = weights(opts.window);
    let np = width.pow(dims.len() as u32) as f64;
    let cov_norm = if opts.sample_covariance {
        np / (np - 1.0)
    } else {
        1.0
    };
    let prod = |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(x, y)| x * y).collect() };
    let (ux, uy) = (filter(a, dims, &w), filter(b, dims, &w));
    let uxx = filter(&prod(a, a), dims, &w);
    let uyy = filter(&prod(b, b), dims, &w);
    let uxy = filter(&prod(a, b), dims, &w);
    let c1 = (opts.k1 * opts.data_range).powi(2);
    let c2 = (opts.k2 * opts.data_range).powi(2);
    let pad = (width - 1) / 2;
    let (mut sum, mut count) = (0.0, 0usize);
    'voxels: for i in 0..a.len() {
        let mut rest = i;
        for &n in dims {
            let pos = rest % n;
            if pos < pad || pos >= n - pad {
                continue 'voxels;
            }
            rest /= n;
        }
        let vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
        let vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
        let vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
        let num = (2.0 * ux[i] * uy[i] + c1) * (2.0 * vxy + c2);
        let den = (ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2);
        sum += num / den;
        count += 1;
    }
    Ok(sum / count as f64)
}

/// The scores `mrgan eval` reports for one predicted volume.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VolumeScores {
    /// Over the whole volume (or the mask).
    pub psnr: f64,
    /// Mean 2D SSIM over the slices in which the real volume has a non-zero voxel.
    pub ssim: f64,
    /// SSIM of the whole volume with a 3D window; None when a dim is smaller than the window.
    pub ssim3d: Option<f64>,
    pub mae: f64,
    pub nmse: f64,
}

/// How volumes are scored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalOptions {
    /// Slicing axis for the 2D SSIM (2: axial in RAS+).
    pub axis: usize,
    /// Restrict PSNR, MAE and NMSE to the real volume's non-zero voxels.
    pub mask_nonzero: bool,
    /// PSNR / SSIM data range; None: max - min of the real volume.
    pub data_range: Option<f64>,
    pub window: Window,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            axis: 2,
            mask_nonzero: false,
            data_range: None,
            window: Window::Uniform(7),
        }
    }
}

/// Scores `pred` against `real` (same dims, first axis fastest).
pub fn evaluate(
    pred: &[f32],
    real: &[f32],
    dims: [usize; 3],
    opts: &EvalOptions,
) -> DataResult<VolumeScores> {
    let (p, r): (Vec<f64>, Vec<f64>) = (
        pred.iter().map(|&v| v as f64).collect(),
        real.iter().map(|&v| v as f64).collect(),
    );
    check_same(&p, &r, &dims)?;
    let (lo, hi) = r
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let range = opts.data_range.unwrap_or(hi - lo);
    if range <= 0.0 {
        return Err(DataError::Mismatch(
            "the real volume is constant: its data range is 0".into(),
        ));
    }
    let mask: Option<Vec<bool>> = opts
        .mask_nonzero
        .then(|| r.iter().map(|&v| v != 0.0).collect());
    let mask = mask.as_deref();
    let ssim_opts = SsimOptions {
        window: opts.window,
        ..SsimOptions::new(range)
    };
    let mut slice_scores = Vec::new();
    for k in 0..dims[opts.axis] {
        let real_slice = slices::slice(real, dims, opts.axis, k);
        if real_slice.data.iter().all(|&v| v == 0.0) {
            continue;
        }
        let pred_slice = slices::slice(pred, dims, opts.axis, k);
        let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let plane = [real_slice.cols, real_slice.rows];
        slice_scores.push(ssim(
            &to64(&real_slice.data),
            &to64(&pred_slice.data),
            &plane,
            &ssim_opts,
        )?);
    }
    let width = window_width(opts.window);
    let ssim3d = dims
        .iter()
        .all(|&d| d >= width)
        .then(|| ssim(&r, &p, &dims, &ssim_opts))
        .transpose()?;
    Ok(VolumeScores {
        psnr: psnr(&r, &p, range, mask),
        ssim: slice_scores.iter().sum::<f64>() / slice_scores.len().max(1) as f64,
        ssim3d,
        mae: mae(&p, &r, mask),
        nmse: nmse(&p, &r, mask),
    })
}
