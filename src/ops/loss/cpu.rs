//! CPU losses, mean-reduced over every element, against a tensor or a constant target.

use crate::ops::Real;

/// The reference's losses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// mean |p - t| (nn.L1Loss).
    L1,
    /// mean (p - t)^2 (nn.MSELoss; LSGAN).
    Mse,
    /// mean of max(p, 0) - p t + log(1 + exp(-|p|)) (nn.BCEWithLogitsLoss; vanilla GAN).
    BceWithLogits,
}

/// What a prediction is compared with.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a, T> {
    Values(&'a [T]),
    /// One value for every element (GAN labels: 1 real, 0 fake).
    Const(T),
}

impl<T: Real> Target<'_, T> {
    fn at(&self, i: usize) -> T {
        match self {
            Target::Values(v) => v[i],
            Target::Const(c) => *c,
        }
    }
}

/// The element loss and its derivatives with respect to prediction and target.
fn element<T: Real>(kind: LossKind, p: T, t: T) -> (T, T, T) {
    match kind {
        LossKind::L1 => {
            let d = p - t;
            let s = if d > T::zero() {
                T::one()
            } else if d < T::zero() {
                -T::one()
            } else {
                T::zero()
            };
            (d.abs(), s, -s)
        }
        LossKind::Mse => {
            let d = p - t;
            (d * d, T::lit(2.0) * d, T::lit(-2.0) * d)
        }
        LossKind::BceWithLogits => {
            let loss = p.max(T::zero()) - p * t + (T::one() + (-p.abs()).exp()).ln();
            let sigmoid = T::one() / (T::one() + (-p).exp());
            (loss, sigmoid - t, -p)
        }
    }
}

/// The mean loss, accumulated in `T`.
pub fn loss<T: Real>(kind: LossKind, pred: &[T], target: Target<T>) -> T {
    let total: T = pred
        .iter()
        .enumerate()
        .map(|(i, &p)| element(kind, p, target.at(i)).0)
        .sum();
    total / T::from_usize(pred.len().max(1)).expect("count")
}

/// Gradients of `gy * loss` wrt the prediction (written to `dpred`) and, if asked, the
/// target values.
pub fn loss_backward<T: Real>(
    kind: LossKind,
    pred: &[T],
    target: Target<T>,
    gy: T,
    dpred: &mut [T],
    mut dtarget: Option<&mut [T]>,
) {
    let scale = gy / T::from_usize(pred.len().max(1)).expect("count");
    for (i, &p) in pred.iter().enumerate() {
        let (_, dp, dt) = element(kind, p, target.at(i));
        dpred[i] = dp * scale;
        if let Some(d) = dtarget.as_deref_mut() {
            d[i] = dt * scale;
        }
    }
}
