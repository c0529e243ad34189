//! Losses (L1, MSE, BCE-with-logits), mean-reduced, against a tensor or a constant label.

pub mod cpu;

pub use cpu::LossKind;

use crate::autograd::{Backward, Tape, Var};
use crate::error::Result;
use crate::tensor::Tensor;

/// A loss target on the tape.
#[derive(Clone, Copy, Debug)]
pub enum LossTarget {
    Var(Var),
    /// The same value for every element, as the reference's GANLoss expands its label.
    Const(f32),
}

fn as_target<'a>(target: &'a Option<Tensor>, constant: f32) -> cpu::Target<'a, f32> {
    match target {
        Some(t) => cpu::Target::Values(t.as_slice()),
        None => cpu::Target::Const(constant),
    }
}

struct LossBackward {
    kind: LossKind,
    pred: Tensor,
    target: Option<Tensor>,
    constant: f32,
}

impl Backward for LossBackward {
    fn backward(&self, gy: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let n = self.pred.numel();
        let mut dpred = vec![0.0; n];
        let wants_target = self.target.is_some() && needs.get(1).copied().unwrap_or(false);
        let mut dtarget = wants_target.then(|| vec![0.0; n]);
        let target = as_target(&self.target, self.constant);
        cpu::loss_backward(
            self.kind,
            self.pred.as_slice(),
            target,
            gy.item()?,
            &mut dpred,
            dtarget.as_deref_mut(),
        );
        let shape = self.pred.shape().clone();
        Ok(vec![
            Some(Tensor::from_vec(shape.clone(), dpred)?),
            dtarget.map(|d| Tensor::from_vec(shape, d)).transpose()?,
        ])
    }
}

impl Tape {
    /// Records the mean loss of `pred` against `target`; a tensor target must match its shape.
    pub fn loss(&mut self, kind: LossKind, pred: Var, target: LossTarget) -> Result<Var> {
        let pv = self.value(pred).clone();
        let (tv, constant, inputs) = match target {
            LossTarget::Var(t) => {
                let tv = self.value(t).clone();
                pv.expect_same_shape("loss", &tv)?;
                (Some(tv), 0.0, vec![pred, t])
            }
            LossTarget::Const(c) => (None, c, vec![pred]),
        };
        let value = cpu::loss(kind, pv.as_slice(), as_target(&tv, constant));
        Ok(
            self.record(Tensor::scalar(value), &inputs, || LossBackward {
                kind,
                pred: pv,
                target: tv,
                constant,
            }),
        )
    }
}
