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

/// Per-group statistics on the normalised tensor's device: one value per channel (batch
/// norm) or per sample and channel (instance norm).
#[derive(Clone)]
struct GroupTensors {
    mean: Tensor,
    invstd: Tensor,
}

struct NormBackward {
    x: Tensor,
    layout: NormLayout,
    over: StatsOver,
    stats: GroupTensors,
    gamma: Option<Tensor>,
    batch_stats: bool,
}

impl Backward for NormBackward {
    fn backward(&self, gy: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let c = self.layout.c;
        #[cfg(feature = "cuda")]
        if let Some([dy, x, mean, invstd]) = Tensor::cuda_buffers(
            "norm backward",
            [gy, &self.x, &self.stats.mean, &self.stats.invstd],
        )? {
            let backend = dy.backend();
            let gamma = self
                .gamma
                .as_ref()
                .map(|g| g.gpu_operand("norm backward"))
                .transpose()?;
            let l = self.layout;
            let grads = backend
                .launch_norm_backward(
                    (dy, x),
                    (l.n, l.c, l.spatial),
                    self.over == StatsOver::Instance,
                    (mean, invstd),
                    gamma,
                    self.batch_stats,
                    None,
                    self.gamma.is_some(),
                )
                .map_err(crate::error::Error::Device)?;
            let dx = Tensor::from_device(self.x.shape().clone(), grads.dx)?;
            let mut out = vec![Some(dx)];
            if let Some((dgamma, dbeta)) = grads.affine {
                out.push(Some(Tensor::from_device([c], dgamma)?));
                out.push(Some(Tensor::from_device([c], dbeta)?));
            }
            return Ok(out);
        }
        let mut dx = needs[0].then(|| vec![0.0; self.x.numel()]);
        let (dgamma, dbeta) = cpu::normalize_backward(
            gy.as_slice(),
            self.x.as_slice(),
            self.layout,
            self.over,
            GroupStats {
                mean: self.stats.mean.as_slice(),
                invstd: self.stats.invstd.as_slice(),
            },
            self.gamma
                .as_ref()
                .map(|g| g.host_operand("norm backward"))
                .transpose()?,
            self.batch_stats,
            dx.as_deref_mut(),
        );
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

/// The batch statistics of `x` over `over`: the group means and 1 / sqrt(var + eps) on
/// x's device, and the biased variances on the host when `want_var` (batch norm's running
/// statistics need them).
fn batch_statistics(
    x: &Tensor,
    layout: NormLayout,
    over: StatsOver,
    want_var: bool,
) -> Result<(GroupTensors, Option<Vec<f32>>)> {
    let groups = [layout.group_count(over)];
    #[cfg(feature = "cuda")]
    if let Some(d) = x.cuda_buffer() {
        let stats = d
            .backend()
            .launch_norm_stats(
                d,
                (layout.n, layout.c, layout.spatial),
                over == StatsOver::Instance,
            )
            .map_err(crate::error::Error::Device)?;
        let var = want_var
            .then(|| stats.var.to_host().map_err(crate::error::Error::Device))
            .transpose()?;
        let stats_tensors = GroupTensors {
            mean: Tensor::from_device(groups, stats.mean)?,
            invstd: Tensor::from_device(groups, stats.invstd)?,
        };
        return Ok((stats_tensors, var));
    }
    let (mean, var) = cpu::moments(x.as_slice(), layout, over);
    let stats = GroupTensors {
        mean: Tensor::from_vec(groups, mean)?,
        invstd: Tensor::from_vec(groups, invstd(&var))?,
    };
    Ok((stats, want_var.then_some(var)))
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
            let device = self.value(x).device();
            let c = [layout.c];
            let running = GroupTensors {
                mean: Tensor::from_vec(c, stats.mean.clone())?.to_device(&device)?,
                invstd: Tensor::from_vec(c, invstd(&stats.var))?.to_device(&device)?,
            };
            return self.record_norm(x, affine, layout, StatsOver::Batch, running, false);
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
        let (batch, var) = batch_statistics(self.value(x), layout, StatsOver::Batch, true)?;
        let var = var.expect("asked for");
        let mean = batch.mean.to_vec()?;
        let m = stats.momentum;
        let unbias = count as f32 / (count - 1) as f32;
        for c in 0..layout.c {
            stats.mean[c] = (1.0 - m) * stats.mean[c] + m * mean[c];
            stats.var[c] = (1.0 - m) * stats.var[c] + m * var[c] * unbias;
        }
        self.record_norm(x, affine, layout, StatsOver::Batch, batch, true)
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
        let (stats, _) = batch_statistics(self.value(x), layout, StatsOver::Instance, false)?;
        self.record_norm(x, affine, layout, StatsOver::Instance, stats, true)
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

    fn record_norm(
        &mut self,
        x: Var,
        affine: Option<Affine>,
        layout: NormLayout,
        over: StatsOver,
        stats: GroupTensors,
        batch_stats: bool,
    ) -> Result<Var> {
        let xv = self.value(x).clone();
        let gamma = affine.map(|a| self.value(a.gamma).clone());
        let beta = affine.map(|a| self.value(a.beta).clone());
        let y = normalize(&xv, layout, over, &stats, gamma.as_ref(), beta.as_ref())?;
        let mut inputs = vec![x];
        inputs.extend(affine.iter().flat_map(|a| [a.gamma, a.beta]));
        Ok(self.record(y, &inputs, || NormBackward {
            x: xv,
            layout,
            over,
            stats,
            gamma,
            batch_stats,
        }))
    }
}

/// (x - mean) * invstd * gamma + beta per group, on x's device.
fn normalize(
    x: &Tensor,
    layout: NormLayout,
    over: StatsOver,
    stats: &GroupTensors,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([d, mean, invstd]) = Tensor::cuda_buffers("norm", [x, &stats.mean, &stats.invstd])?
    {
        let gamma = gamma.map(|g| g.gpu_operand("norm")).transpose()?;
        let beta = beta.map(|b| b.gpu_operand("norm")).transpose()?;
        let y = d.backend().launch_norm_apply(
            d,
            (layout.n, layout.c, layout.spatial),
            over == StatsOver::Instance,
            (mean, invstd),
            (gamma, beta),
            None,
        );
        return crate::ops::device_result(x.shape(), y);
    }
    let mut y = vec![0.0; x.numel()];
    cpu::normalize(
        x.as_slice(),
        layout,
        over,
        GroupStats {
            mean: stats.mean.as_slice(),
            invstd: stats.invstd.as_slice(),
        },
        gamma.map(|g| g.host_operand("norm")).transpose()?,
        beta.map(|b| b.host_operand("norm")).transpose()?,
        &mut y,
    );
    Tensor::from_vec(x.shape().clone(), y)
}
