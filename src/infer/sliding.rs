//! Sliding-window inference for volumetric generators: overlapping patches over the whole
//! volume, several per batch, blended by a Gaussian weight (no seams) or a plain average.
//!
//! Window starts along an axis are `i * stride`, the last one clamped flush with the far
//! edge; a volume smaller than the patch is padded with the background at the high end and
//! cropped back. Accumulation is in f64, so an identity generator returns the input exactly.

use crate::data::patches::extract;
use crate::error::Result;

/// How overlapping outputs are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blend {
    /// Unweighted mean (the reference's behaviour, which can leave seams).
    Average,
    /// Each patch weighted by a Gaussian centred on it (sigma = patch / 8 per axis).
    Gaussian,
}

/// Sliding-window settings; sizes and strides in voxels, (x, y, z).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingWindow {
    pub patch: [usize; 3],
    pub stride: [usize; 3],
    pub blend: Blend,
    /// Patches per generator call.
    pub batch: usize,
}

/// Window starts along one axis of `size` (already at least `patch`). A stride larger than
/// the patch would leave gaps, so it is capped at the patch size.
pub fn starts(size: usize, patch: usize, stride: usize) -> Vec<usize> {
    if size <= patch {
        return vec![0];
    }
    let stride = stride.clamp(1, patch);
    let n = (size - patch).div_ceil(stride) + 1;
    let mut s: Vec<usize> = (0..n).map(|i| (i * stride).min(size - patch)).collect();
    s.dedup();
    s
}

fn weights(patch: [usize; 3], blend: Blend) -> Vec<f64> {
    let axis = |n: usize| -> Vec<f64> {
        match blend {
            Blend::Average => vec![1.0; n],
            Blend::Gaussian => {
                let sigma = (n as f64 / 8.0).max(0.5);
                let c = (n as f64 - 1.0) / 2.0;
                // Floor the weight so patch corners still count where only they cover a voxel.
                (0..n)
                    .map(|i| {
                        (-((i as f64 - c).powi(2)) / (2.0 * sigma * sigma))
                            .exp()
                            .max(1e-3)
                    })
                    .collect()
            }
        }
    };
    let (wx, wy, wz) = (axis(patch[0]), axis(patch[1]), axis(patch[2]));
    let mut w = Vec::with_capacity(patch.iter().product());
    for z in &wz {
        for y in &wy {
            for x in &wx {
                w.push(x * y * z);
            }
        }
    }
    w
}

/// Runs `generator` (a batch of patches in, one output per patch out, each first axis
/// fastest) over the volume `data` of `dims`; returns the blended output volume.
pub fn run(
    data: &[f32],
    dims: [usize; 3],
    background: f32,
    opts: &SlidingWindow,
    mut generator: impl FnMut(&[Vec<f32>]) -> Result<Vec<Vec<f32>>>,
) -> Result<Vec<f32>> {
    let padded: [usize; 3] = std::array::from_fn(|a| dims[a].max(opts.patch[a]));
    let source = if padded == dims {
        data.to_vec()
    } else {
        extract(data, dims, [0; 3], padded, background)
    };
    let origins: Vec<[usize; 3]> = {
        let s: [Vec<usize>; 3] =
            std::array::from_fn(|a| starts(padded[a], opts.patch[a], opts.stride[a]));
        let mut all = Vec::new();
        for &z in &s[2] {
            for &y in &s[1] {
                all.extend(s[0].iter().map(|&x| [x, y, z]));
            }
        }
        all
    };
    let w = weights(opts.patch, opts.blend);
    let n: usize = padded.iter().product();
    let (mut acc, mut wsum) = (vec![0.0f64; n], vec![0.0f64; n]);
    for chunk in origins.chunks(opts.batch.max(1)) {
        let inputs: Vec<Vec<f32>> = chunk
            .iter()
            .map(|&o| extract(&source, padded, o, opts.patch, background))
            .collect();
        let outputs = generator(&inputs)?;
        for (o, out) in chunk.iter().zip(&outputs) {
            let [px, py, pz] = opts.patch;
            for z in 0..pz {
                for y in 0..py {
                    let dst = o[0] + padded[0] * (o[1] + y + padded[1] * (o[2] + z));
                    let src = px * (y + py * z);
                    for x in 0..px {
                        acc[dst + x] += w[src + x] * out[src + x] as f64;
                        wsum[dst + x] += w[src + x];
                    }
                }
            }
        }
    }
    let blended: Vec<f32> = acc.iter().zip(&wsum).map(|(a, w)| (a / w) as f32).collect();
    Ok(if padded == dims {
        blended
    } else {
        extract(&blended, padded, [0; 3], dims, background)
    })
}

/// Runs a volumetric network on patches: each becomes a `[1, pz, py, px]` item of a batch.
pub fn network_patches(
    net: &mut dyn crate::nn::nets::Network,
    patches: &[Vec<f32>],
    patch: [usize; 3],
    mode: &crate::nn::layers::Mode,
) -> Result<Vec<Vec<f32>>> {
    let data: Vec<f32> = patches.iter().flat_map(|p| p.iter().copied()).collect();
    let x =
        crate::tensor::Tensor::from_vec([patches.len(), 1, patch[2], patch[1], patch[0]], data)?;
    let y = super::forward_on_host_data(net, x, mode)?;
    let per: usize = patch.iter().product();
    Ok(y.as_slice().chunks(per).map(<[f32]>::to_vec).collect())
}
