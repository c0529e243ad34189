//! CPU batch and instance normalisation. Statistics are taken per group: per channel over
//! batch and space (batch norm) or per sample and channel over space (instance norm).
//! Variances are biased (divide by the count), as PyTorch normalises.

use rayon::prelude::*;

use crate::ops::Real;

/// Which elements share one mean and variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsOver {
    /// One group per channel, over batch and space.
    Batch,
    /// One group per (sample, channel), over space.
    Instance,
}

/// An N, C, spatial tensor's extents.
#[derive(Clone, Copy, Debug)]
pub struct NormLayout {
    pub n: usize,
    pub c: usize,
    pub spatial: usize,
}

impl NormLayout {
    pub fn groups(&self, over: StatsOver) -> usize {
        match over {
            StatsOver::Batch => self.c,
            StatsOver::Instance => self.n * self.c,
        }
    }
    /// Elements per group.
    /// How many groups `over` makes: channels, or samples times channels.
    pub fn group_count(&self, over: StatsOver) -> usize {
        match over {
            StatsOver::Batch => self.c,
            StatsOver::Instance => self.n * self.c,
        }
    }
    pub fn group_len(&self, over: StatsOver) -> usize {
        match over {
            StatsOver::Batch => self.n * self.spatial,
            StatsOver::Instance => self.spatial,
        }
    }
    /// The group of plane `p` (plane = one sample's channel).
    fn group_of_plane(&self, over: StatsOver, p: usize) -> usize {
        match over {
            StatsOver::Batch => p % self.c,
            StatsOver::Instance => p,
        }
    }
}

/// Sums `f(plane)` per plane in parallel, then adds the planes of each group.
fn per_group<T: Real, const K: usize>(
    l: NormLayout,
    over: StatsOver,
    f: impl Fn(usize) -> [T; K] + Sync + Send,
) -> Vec<[T; K]> {
    let planes: Vec<[T; K]> = (0..l.n * l.c).into_par_iter().map(f).collect();
    let mut groups = vec![[T::zero(); K]; l.groups(over)];
    for (p, s) in planes.iter().enumerate() {
        let g = &mut groups[l.group_of_plane(over, p)];
        for k in 0..K {
            g[k] += s[k];
        }
    }
    groups
}

/// Per-group statistics a normalisation applies.
#[derive(Clone, Copy, Debug)]
pub struct GroupStats<'a, T> {
    pub mean: &'a [T],
    /// 1 / sqrt(var + eps).
    pub invstd: &'a [T],
}

/// Mean and biased variance of each group (two passes, for accuracy).
pub fn moments<T: Real>(x: &[T], l: NormLayout, over: StatsOver) -> (Vec<T>, Vec<T>) {
    let count = T::from_usize(l.group_len(over)).expect("count");
    let plane = |p: usize| &x[p * l.spatial..(p + 1) * l.spatial];
    let sums = per_group(l, over, |p| [plane(p).iter().copied().sum::<T>()]);
    let mean: Vec<T> = sums.iter().map(|s| s[0] / count).collect();
    let sq = per_group(l, over, |p| {
        let m = mean[l.group_of_plane(over, p)];
        [plane(p).iter().map(|&v| (v - m) * (v - m)).sum::<T>()]
    });
    (mean, sq.iter().map(|s| s[0] / count).collect())
}

/// `y = (x - mean) * invstd * gamma + beta`, with per-group mean/invstd and per-channel
/// gamma/beta (absent means 1 and 0).
pub fn normalize<T: Real>(
    x: &[T],
    l: NormLayout,
    over: StatsOver,
    stats: GroupStats<'_, T>,
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    y: &mut [T],
) {
    let GroupStats { mean, invstd } = stats;
    y.par_chunks_mut(l.spatial)
        .enumerate()
        .for_each(|(p, out)| {
            let g = l.group_of_plane(over, p);
            let c = p % l.c;
            let scale = invstd[g] * gamma.map_or(T::one(), |s| s[c]);
            let shift = beta.map_or(T::zero(), |b| b[c]) - mean[g] * scale;
            let xp = &x[p * l.spatial..(p + 1) * l.spatial];
            out.iter_mut()
                .zip(xp)
                .for_each(|(o, &v)| *o = v * scale + shift);
        });
}

/// Gradients of [`normalize`]. With `batch_stats` the mean and invstd were computed from `x`
/// itself and are differentiated through; otherwise (running statistics) they are constants.
/// Writes `dx` when given and returns (dgamma, dbeta) per channel.
#[allow(clippy::too_many_arguments)] // a kernel signature: every operand is needed
pub fn normalize_backward<T: Real>(
    dy: &[T],
    x: &[T],
    l: NormLayout,
    over: StatsOver,
    stats: GroupStats<'_, T>,
    gamma: Option<&[T]>,
    batch_stats: bool,
    dx: Option<&mut [T]>,
) -> (Vec<T>, Vec<T>) {
    let GroupStats { mean, invstd } = stats;
    let plane = |p: usize| p * l.spatial..(p + 1) * l.spatial;
    // Per group: sum(dy) and sum(dy * xhat).
    let sums = per_group(l, over, |p| {
        let g = l.group_of_plane(over, p);
        let r = plane(p);
        let mut s = [T::zero(); 2];
        for (&d, &v) in dy[r.clone()].iter().zip(&x[r]) {
            s[0] += d;
            s[1] += d * (v - mean[g]) * invstd[g];
        }
        s
    });
    // Per channel: dbeta = sum(dy), dgamma = sum(dy * xhat).
    let mut dgamma = vec![T::zero(); l.c];
    let mut dbeta = vec![T::zero(); l.c];
    for (g, s) in sums.iter().enumerate() {
        let c = match over {
            StatsOver::Batch => g,
            StatsOver::Instance => g % l.c,
        };
        dbeta[c] += s[0];
        dgamma[c] += s[1];
    }
    if let Some(dx) = dx {
        let count = T::from_usize(l.group_len(over)).expect("count");
        dx.par_chunks_mut(l.spatial)
            .enumerate()
            .for_each(|(p, out)| {
                let g = l.group_of_plane(over, p);
                let scale = invstd[g] * gamma.map_or(T::one(), |s| s[p % l.c]);
                let r = plane(p);
                if batch_stats {
                    // dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)) over the group.
                    let (m_dy, m_dyx) = (sums[g][0] / count, sums[g][1] / count);
                    for ((o, &d), &v) in out.iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
                        let xhat = (v - mean[g]) * invstd[g];
                        *o = scale * (d - m_dy - xhat * m_dyx);
                    }
                } else {
                    out.iter_mut()
                        .zip(&dy[r])
                        .for_each(|(o, &d)| *o = scale * d);
                }
            });
    }
    (dgamma, dbeta)
}
