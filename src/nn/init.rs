//! Weight initialisation as the reference's `init_weights`: conv weights by the chosen scheme,
//! biases zero, BatchNorm scales ~ N(1, gain).

use rand::Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use serde::{Deserialize, Serialize};

use super::params::{ParamArena, ParamRole};
use crate::tensor::Shape;

/// The reference's `--init_type` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// N(0, gain); the reference default with gain 0.02.
    Normal,
    /// Xavier (Glorot) normal: std = gain * sqrt(2 / (fan_in + fan_out)).
    Xavier,
    /// Kaiming normal, a = 0, fan_in mode: std = sqrt(2 / fan_in); ignores gain.
    Kaiming,
    /// A random (semi-)orthogonal matrix over the flattened weight, times gain.
    Orthogonal,
}

/// PyTorch's fans: dim 1 times the receptive field is fan_in, dim 0 times it is fan_out.
/// (For a transposed conv's [in, out, k...] weight that makes fan_in = out * k, as PyTorch.)
pub fn fans(shape: &Shape) -> (usize, usize) {
    let d = shape.dims();
    let receptive: usize = d.iter().skip(2).product();
    let fan_in = d.get(1).copied().unwrap_or(1) * receptive;
    (fan_in, d[0] * receptive)
}

/// Initialises every parameter of `arena` by its role.
pub fn init_arena<R: Rng + ?Sized>(arena: &mut ParamArena, kind: InitKind, gain: f32, rng: &mut R) {
    for i in 0..arena.entries().len() {
        let entry = arena.entries()[i].clone();
        let data = &mut arena.values_mut()[entry.range()];
        match entry.role {
            ParamRole::Bias => data.fill(0.0),
            ParamRole::NormScale => fill_normal(data, 1.0, gain, rng),
            ParamRole::Weight => init_weight(data, &entry.shape, kind, gain, rng),
        }
    }
}

/// Initialises one weight tensor in place.
pub fn init_weight<R: Rng + ?Sized>(
    data: &mut [f32],
    shape: &Shape,
    kind: InitKind,
    gain: f32,
    rng: &mut R,
) {
    let (fan_in, fan_out) = fans(shape);
    match kind {
        InitKind::Normal => fill_normal(data, 0.0, gain, rng),
        InitKind::Xavier => {
            let std = gain * (2.0 / (fan_in + fan_out) as f32).sqrt();
            fill_normal(data, 0.0, std, rng)
        }
        InitKind::Kaiming => fill_normal(data, 0.0, (2.0 / fan_in as f32).sqrt(), rng),
        InitKind::Orthogonal => orthogonal(data, shape.dims()[0], gain, rng),
    }
}

fn fill_normal<R: Rng + ?Sized>(data: &mut [f32], mean: f32, std: f32, rng: &mut R) {
    let normal = Normal::new(mean, std).expect("finite, non-negative std");
    data.iter_mut().for_each(|v| *v = normal.sample(rng));
}

/// Fills `data`, viewed as `rows x (len / rows)`, with orthonormal rows or columns (whichever
/// are fewer) scaled by `gain`: Gram-Schmidt on a Gaussian matrix, which equals PyTorch's QR
/// with the sign of R's diagonal folded into Q.
fn orthogonal<R: Rng + ?Sized>(data: &mut [f32], rows: usize, gain: f32, rng: &mut R) {
    let cols = data.len() / rows;
    // Orthonormalise the `n` vectors of length `m` (the longer side).
    let (m, n) = if rows >= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..m).map(|_| StandardNormal.sample(rng)).collect())
        .collect();
    for j in 0..n {
        let (done, rest) = v.split_at_mut(j);
        let vj = &mut rest[0];
        for q in done.iter() {
            let dot: f64 = q.iter().zip(vj.iter()).map(|(a, b)| a * b).sum();
            vj.iter_mut().zip(q).for_each(|(x, qi)| *x -= dot * qi);
        }
        let norm = vj.iter().map(|x| x * x).sum::<f64>().sqrt();
        vj.iter_mut().for_each(|x| *x /= norm);
    }
    for r in 0..rows {
        for c in 0..cols {
            // rows >= cols: vector c holds column c; otherwise vector r holds row r.
            let x = if rows >= cols { v[c][r] } else { v[r][c] };
            data[r * cols + c] = gain * x as f32;
        }
    }
}
