//! 3D patch sampling for the volumetric CycleGAN: random crops biased towards the
//! foreground, with a minimum-foreground rule that gives up after a bounded number of tries
//! (keeping the best patch seen) instead of looping forever.

use rand::{Rng, RngExt};

/// Patch sampling settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatchOptions {
    pub size: [usize; 3],
    /// Probability of centring a patch on a random foreground voxel rather than anywhere.
    pub foreground_bias: f64,
    /// Fraction of foreground voxels a patch should have.
    pub min_foreground: f64,
    /// Draws before settling for the best patch seen.
    pub max_tries: usize,
}

impl Default for PatchOptions {
    fn default() -> Self {
        PatchOptions {
            size: [128, 128, 64],
            foreground_bias: 0.8,
            min_foreground: 0.1,
            max_tries: 20,
        }
    }
}

/// Where a patch was cut and how much foreground it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PatchPlacement {
    pub origin: [usize; 3],
    pub foreground: f64,
}

/// Copies the `size` box at `origin` from a first-axis-fastest volume; parts outside the
/// volume are `fill`.
pub fn extract(
    data: &[f32],
    dims: [usize; 3],
    origin: [usize; 3],
    size: [usize; 3],
    fill: f32,
) -> Vec<f32> {
    let mut out = vec![fill; size.iter().product()];
    for z in 0..size[2].min(dims[2].saturating_sub(origin[2])) {
        for y in 0..size[1].min(dims[1].saturating_sub(origin[1])) {
            let src = origin[0] + dims[0] * (origin[1] + y + dims[1] * (origin[2] + z));
            let n = size[0].min(dims[0].saturating_sub(origin[0]));
            let dst = size[0] * (y + size[1] * z);
            out[dst..dst + n].copy_from_slice(&data[src..src + n]);
        }
    }
    out
}

fn foreground_fraction(
    mask: &[bool],
    dims: [usize; 3],
    origin: [usize; 3],
    size: [usize; 3],
) -> f64 {
    let mut count = 0usize;
    for z in origin[2]..(origin[2] + size[2]).min(dims[2]) {
        for y in origin[1]..(origin[1] + size[1]).min(dims[1]) {
            let row = dims[0] * (y + dims[1] * z);
            count += mask[row + origin[0]..row + (origin[0] + size[0]).min(dims[0])]
                .iter()
                .filter(|&&m| m)
                .count();
        }
    }
    count as f64 / size.iter().product::<usize>() as f64
}

/// Chooses a patch position in a volume of `dims` with foreground `mask`.
pub fn place<R: Rng + ?Sized>(
    mask: &[bool],
    dims: [usize; 3],
    opts: &PatchOptions,
    rng: &mut R,
) -> PatchPlacement {
    let max_origin: [usize; 3] = std::array::from_fn(|a| dims[a].saturating_sub(opts.size[a]));
    let foreground: Vec<usize> = if opts.foreground_bias > 0.0 {
        mask.iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i)
            .collect()
    } else {
        Vec::new()
    };
    let mut best = PatchPlacement {
        origin: [0; 3],
        foreground: -1.0,
    };
    for _ in 0..opts.max_tries.max(1) {
        let origin: [usize; 3] =
            if !foreground.is_empty() && rng.random::<f64>() < opts.foreground_bias {
                let i = foreground[rng.random_range(0..foreground.len())];
                let center = [
                    i % dims[0],
                    (i / dims[0]) % dims[1],
                    i / (dims[0] * dims[1]),
                ];
                std::array::from_fn(|a| {
                    center[a]
                        .saturating_sub(opts.size[a] / 2)
                        .min(max_origin[a])
                })
            } else {
                std::array::from_fn(|a| rng.random_range(0..=max_origin[a]))
            };
        let fraction = foreground_fraction(mask, dims, origin, opts.size);
        if fraction > best.foreground {
            best = PatchPlacement {
                origin,
                foreground: fraction,
            };
        }
        if fraction >= opts.min_foreground {
            break;
        }
    }
    best
}
