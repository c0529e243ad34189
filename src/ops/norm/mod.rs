//! Batch norm and instance norm (2D and 3D), eps 1e-5, as PyTorch's BatchNorm2d/3d and
//! InstanceNorm2d/3d (the latter without running statistics, as the reference uses it).

pub mod cpu;

use cpu::{GroupStats, NormLayout, StatsOver};

use crate::autograd::{Backward, Tape, Var};
use crate::error::{Result, shape_error};
use crate::tensor::Tensor;

/// PyTorch's default epsilon for both norms.
pub const EPS: f32 = 1e-5;

/// A batch norm's running statistics (PyTorch's buffers), updated in training mode with
/// `momentum`, and used instead of batch statistics in evaluation mode.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStats {
    pub mean: Vec<f32>,
    /// Running *unbiased* variance, as PyTorch keeps it.
    pub var: Vec<f32>,
    pub momentum: f32,
}

impl RunningStats {
    /// Mean 0, variance 1, momentum 0.1: PyTorch's initial state.
    pub fn new(channels: usize) -> Self {
        RunningStats {
            mean: vec![0.0; channels],
            var: vec![1.0; channels],
            momentum: 0.1,
        }
    }
}

/// A norm's scale and shift, each of shape `[channels]`.
#[derive(Clone, Copy, Debug)]
pub struct Affine {
    pub gamma: Var,
    pub beta: Var,
}

struct NormBackward {
    x: Tensor,
    layout: NormLayout,
    over: StatsOver,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    gamma: Option<Tensor>,
    batch_stats: bool,
}

impl Backward for NormBackward {
    fn backward(&self, gy: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let mut dx = needs[0].then(|| vec![0.0; self.x.numel()]);
        let (dgamma, dbeta) = cpu::normalize_backward(
            gy.as_slice(),
            self.x.as_slice(),
            self.layout,
            self.over,
            GroupStats {
                mean: &self.mean,
                invstd: &self.invstd,
            },
            self.gamma.as_ref().map(|g| g.as_slice()),
            self.batch_stats,
            dx.as_deref_mut(),
        );
        let c = self.layout.c;
        Ok(vec![
            dx.map(|d| Tensor::from_vec(self.x.shape().clone(), d))
                .transpose()?,
            Some(Tensor::from_vec([c], dgamma)?),
            Some(Tensor::from_vec([c], dbeta)?),
        ])
    }
}

fn invstd(var: &[f32]) -> Vec<f32> {
    var.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect()
}

impl Tape {
    /// Batch norm. In training mode it normalises with this call's batch statistics and
    /// updates `stats`; each call has its own statistics, as in PyTorch. In evaluation mode it
    /// uses `stats` and leaves them alone.
    pub fn batch_norm(
        &mut self,
        x: Var,
        affine: Option<Affine>,
        stats: &mut RunningStats,
        training: bool,
    ) -> Result<Var> {
        const OP: &str = "batch_norm";
        let layout = self.norm_layout(OP, x, affine)?;
        if stats.mean.len() != layout.c || stats.var.len() != layout.c {
            return Err(shape_error(
                OP,
                format!(
                    "running statistics hold {} channels, input {} has {}",
                    stats.mean.len(),
                    self.value(x).shape(),
                    layout.c
                ),
            ));
        }
        if !training {
            let invstd = invstd(&stats.var);
            return self.record_norm(
                x,
                affine,
                layout,
                StatsOver::Batch,
                stats.mean.clone(),
                invstd,
                false,
            );
        }
        let count = layout.group_len(StatsOver::Batch);
        if count < 2 {
            return Err(shape_error(
                OP,
                format!(
                    "needs more than one value per channel in training, input is {}",
                    self.value(x).shape()
                ),
            ));
        }
        let (mean, var) = cpu::moments(self.value(x).as_slice(), layout, StatsOver::Batch);
        let m = stats.momentum;
        let unbias = count as f32 / (count - 1) as f32;
        for c in 0..layout.c {
            stats.mean[c] = (1.0 - m) * stats.mean[c] + m * mean[c];
            stats.var[c] = (1.0 - m) * stats.var[c] + m * var[c] * unbias;
        }
        let invstd = invstd(&var);
        self.record_norm(x, affine, layout, StatsOver::Batch, mean, invstd, true)
    }

    /// Instance norm: every sample and channel normalised over its own spatial extent.
    pub fn instance_norm(&mut self, x: Var, affine: Option<Affine>) -> Result<Var> {
        const OP: &str = "instance_norm";
        let layout = self.norm_layout(OP, x, affine)?;
        if layout.spatial < 2 {
            return Err(shape_error(
                OP,
                format!(
                    "needs more than one spatial element, input is {}",
                    self.value(x).shape()
                ),
            ));
        }
        let (mean, var) = cpu::moments(self.value(x).as_slice(), layout, StatsOver::Instance);
        let invstd = invstd(&var);
        self.record_norm(x, affine, layout, StatsOver::Instance, mean, invstd, true)
    }

    fn norm_layout(&self, op: &'static str, x: Var, affine: Option<Affine>) -> Result<NormLayout> {
        let (n, c, spatial) = self.value(x).shape().batch_channels_spatial(op)?;
        if let Some(a) = affine {
            for p in [a.gamma, a.beta] {
                if self.value(p).dims() != [c] {
                    return Err(shape_error(
                        op,
                        format!(
                            "affine parameters must have shape [{c}], got {}",
                            self.value(p).shape()
                        ),
                    ));
                }
            }
        }
        Ok(NormLayout { n, c, spatial })
    }

    #[allow(clippy::too_many_arguments)]
    fn record_norm(
        &mut self,
        x: Var,
        affine: Option<Affine>,
        layout: NormLayout,
        over: StatsOver,
        mean: Vec<f32>,
        invstd: Vec<f32>,
        batch_stats: bool,
    ) -> Result<Var> {
        let xv = self.value(x).clone();
        let gamma = affine.map(|a| self.value(a.gamma).clone());
        let beta = affine.map(|a| self.value(a.beta).clone());
        let mut y = vec![0.0; xv.numel()];
        cpu::normalize(
            xv.as_slice(),
            layout,
            over,
            GroupStats {
                mean: &mean,
                invstd: &invstd,
            },
            gamma.as_ref().map(|g| g.as_slice()),
            beta.as_ref().map(|b| b.as_slice()),
            &mut y,
        );
        let y = Tensor::from_vec(xv.shape().clone(), y)?;
        let mut inputs = vec![x];
        inputs.extend(affine.iter().flat_map(|a| [a.gamma, a.beta]));
        Ok(self.record(y, &inputs, || NormBackward {
            x: xv,
            layout,
            over,
            mean,
            invstd,
            gamma,
            batch_stats,
        }))
    }
}
