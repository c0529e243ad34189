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

fn as_target<'a>(target: &'a Option<Tensor>, constant: f32) -> Result<cpu::Target<'a, f32>> {
    Ok(match target {
        Some(t) => cpu::Target::Values(t.host_operand("loss")?),
        None => cpu::Target::Const(constant),
    })
}

/// The mean loss, a host number wherever `pred` lives (the training loop reads it anyway).
fn loss_value(
    kind: LossKind,
    pred: &Tensor,
    target: &Option<Tensor>,
    constant: f32,
) -> Result<f32> {
    #[cfg(feature = "cuda")]
    if let Some(p) = pred.cuda_buffer() {
        let target = device_target(pred, target)?;
        let value = p.backend().launch_loss(kind, p, target, constant);
        return Ok(value.map_err(crate::error::Error::Device)? as f32);
    }
    Ok(cpu::loss(
        kind,
        pred.as_slice(),
        as_target(target, constant)?,
    ))
}

/// The target's device buffer; it must be on `pred`'s GPU.
#[cfg(feature = "cuda")]
fn device_target<'a>(
    pred: &'a Tensor,
    target: &'a Option<Tensor>,
) -> Result<Option<&'a crate::device::cuda::DeviceBuffer>> {
    match target {
        None => Ok(None),
        Some(t) => Ok(Tensor::cuda_buffers("loss", [pred, t])?.map(|[_, t]| t)),
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
        #[cfg(feature = "cuda")]
        if let Some(pred) = self.pred.cuda_buffer() {
            let target = device_target(&self.pred, &self.target)?;
            let wants_target = needs.get(1).copied().unwrap_or(false);
            let (dpred, dtarget) = pred
                .backend()
                .launch_loss_backward(
                    self.kind,
                    pred,
                    target,
                    self.constant,
                    gy.item()?,
                    wants_target,
                )
                .map_err(crate::error::Error::Device)?;
            let shape = self.pred.shape();
            return Ok(vec![
                Some(Tensor::from_device(shape.clone(), dpred)?),
                dtarget
                    .map(|d| Tensor::from_device(shape.clone(), d))
                    .transpose()?,
            ]);
        }
        let n = self.pred.numel();
        let mut dpred = vec![0.0; n];
        let wants_target = self.target.is_some() && needs.get(1).copied().unwrap_or(false);
        let mut dtarget = wants_target.then(|| vec![0.0; n]);
        let target = as_target(&self.target, self.constant)?;
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
        let value = loss_value(kind, &pv, &tv, constant)?;
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
