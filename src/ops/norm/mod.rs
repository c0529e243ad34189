//! Batch norm and instance norm (2D and 3D), eps 1e-5, as PyTorch's BatchNorm2d/3d and
//! InstanceNorm2d/3d (the latter without running statistics, as the reference uses it).

pub mod cpu;

use cpu::{GroupStats, NormLayout, StatsOver};

use crate::autograd::{Backward, Tape, Var};
use crate::error::{Result, shape_error};
use crate::ops::elementwise::Activation;
use crate::ops::elementwise::cpu::{activate, activate_backward};
use crate::tensor::Tensor;

/// PyTorch's default epsilon for both norms.
pub const EPS: f32 = 1e-5;

/// A batch norm's running statistics (PyTorch's buffers), updated in training mode with
/// `momentum`, and used instead of batch statistics in evaluation mode. They live on the
/// device of the network (`to_device`), so a training step updates them there without
/// waiting for the device.
#[derive(Clone, Debug)]
pub struct RunningStats {
    /// `[channels]`.
    pub mean: Tensor,
    /// Running *unbiased* variance, as PyTorch keeps it; `[channels]`.
    pub var: Tensor,
    pub momentum: f32,
}

impl RunningStats {
    /// Mean 0, variance 1, momentum 0.1: PyTorch's initial state.
    pub fn new(channels: usize) -> Self {
        RunningStats {
            mean: Tensor::zeros([channels]),
            var: Tensor::full([channels], 1.0),
            momentum: 0.1,
        }
    }

    pub fn channels(&self) -> usize {
        self.mean.numel()
    }

    /// Moves both statistics to `device`.
    pub fn to_device(&mut self, device: &crate::device::Device) -> Result<()> {
        self.mean = self.mean.to_device(device)?;
        self.var = self.var.to_device(device)?;
        Ok(())
    }

    /// Replaces both statistics with host values (a loaded checkpoint), keeping their device.
    pub fn load(&mut self, mean: Vec<f32>, var: Vec<f32>) -> Result<()> {
        let (c, device) = ([self.channels()], self.mean.device());
        self.mean = Tensor::from_vec(c, mean)?.to_device(&device)?;
        self.var = Tensor::from_vec(c, var)?.to_device(&device)?;
        Ok(())
    }

    /// running = (1 - m) running + m batch, for the mean and for the variance (unbiased by
    /// `unbias`), on the statistics' device (one launch on a GPU,
    /// `CudaBackend::launch_running_stats`): element by element the f32 products and sums
    /// `r * (1 - m) + (b * m) * unbias`, each rounded on its own on either device.
    fn update(&mut self, batch_mean: &Tensor, batch_var: &Tensor, unbias: f32) -> Result<()> {
        let m = self.momentum;
        #[cfg(feature = "cuda")]
        if let Some([r_mean, r_var, b_mean, b_var]) = Tensor::cuda_buffers(
            "batch norm running statistics",
            [&self.mean, &self.var, batch_mean, batch_var],
        )? {
            let (mean, var) = r_mean
                .backend()
                .launch_running_stats((r_mean, r_var), (b_mean, b_var), m, unbias)
                .map_err(crate::error::Error::Device)?;
            let c = [self.channels()];
            self.mean = Tensor::from_device(c, mean)?;
            self.var = Tensor::from_device(c, var)?;
            return Ok(());
        }
        let mix = |running: &Tensor, batch: &Tensor, unbias: f32| -> Result<Tensor> {
            let values = running.as_slice().iter().zip(batch.as_slice());
            let mixed = values.map(|(&r, &b)| r * (1.0 - m) + (b * m) * unbias);
            Tensor::from_vec(running.shape().clone(), mixed.collect())
        };
        self.mean = mix(&self.mean, batch_mean, 1.0)?;
        self.var = mix(&self.var, batch_var, unbias)?;
        Ok(())
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
    /// The activation fused after the norm, with the op's output y (act' is taken from y:
    /// for the ReLU family with a slope >= 0, y > 0 exactly where the norm's output is).
    fused: Option<(Tensor, Activation)>,
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
            let fused = match &self.fused {
                Some((y, act)) => Some((y.gpu_operand("norm backward")?, *act)),
                None => None,
            };
            let l = self.layout;
            let grads = backend
                .launch_norm_backward(
                    (dy, x),
                    (l.n, l.c, l.spatial),
                    self.over == StatsOver::Instance,
                    (mean, invstd),
                    gamma,
                    self.batch_stats,
                    fused,
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
        // Through the fused activation first: the gradient at the norm's output.
        let dz = self.fused.as_ref().map(|(y, act)| {
            let mut dz = vec![0.0; y.numel()];
            let y = y.as_slice();
            activate_backward(gy.as_slice(), y, y, *act, &mut dz);
            dz
        });
        let (dgamma, dbeta) = cpu::normalize_backward(
            dz.as_deref().unwrap_or(gy.as_slice()),
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

/// The batch statistics of `x` over `over`, on x's device: the group means and
/// 1 / sqrt(var + eps), and the biased variances (batch norm's running statistics need them).
fn batch_statistics(
    x: &Tensor,
    layout: NormLayout,
    over: StatsOver,
) -> Result<(GroupTensors, Tensor)> {
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
        let group_tensors = GroupTensors {
            mean: Tensor::from_device(groups, stats.mean)?,
            invstd: Tensor::from_device(groups, stats.invstd)?,
        };
        return Ok((group_tensors, Tensor::from_device(groups, stats.var)?));
    }
    let (mean, var) = cpu::moments(x.as_slice(), layout, over);
    let stats = GroupTensors {
        mean: Tensor::from_vec(groups, mean)?,
        invstd: Tensor::from_vec(groups, invstd(&var))?,
    };
    Ok((stats, Tensor::from_vec(groups, var)?))
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
        self.batch_norm_then(x, affine, stats, training, None)
    }

    /// [`Self::batch_norm`] followed by `act` as one op: one kernel each way on a GPU, and
    /// one tensor kept for backward instead of two. The same values and gradients as the two
    /// ops recorded one after the other.
    pub fn batch_norm_then(
        &mut self,
        x: Var,
        affine: Option<Affine>,
        stats: &mut RunningStats,
        training: bool,
        act: Option<Activation>,
    ) -> Result<Var> {
        const OP: &str = "batch_norm";
        let layout = self.norm_layout(OP, x, affine)?;
        if stats.channels() != layout.c || stats.var.numel() != layout.c {
            return Err(shape_error(
                OP,
                format!(
                    "running statistics hold {} channels, input {} has {}",
                    stats.channels(),
                    self.value(x).shape(),
                    layout.c
                ),
            ));
        }
        if !training {
            // 1 / sqrt(var + eps) is taken on the host: evaluation mode is for inference,
            // where one small read per layer does not matter.
            let device = self.value(x).device();
            let running = GroupTensors {
                mean: stats.mean.to_device(&device)?,
                invstd: Tensor::from_vec([layout.c], invstd(&stats.var.to_vec()?))?
                    .to_device(&device)?,
            };
            let how = (StatsOver::Batch, false, act);
            return self.record_norm(x, affine, layout, running, how);
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
        let (batch, var) = batch_statistics(self.value(x), layout, StatsOver::Batch)?;
        let unbias = count as f32 / (count - 1) as f32;
        stats.update(&batch.mean, &var, unbias)?;
        self.record_norm(x, affine, layout, batch, (StatsOver::Batch, true, act))
    }

    /// Instance norm: every sample and channel normalised over its own spatial extent.
    pub fn instance_norm(&mut self, x: Var, affine: Option<Affine>) -> Result<Var> {
        self.instance_norm_then(x, affine, None)
    }

    /// [`Self::instance_norm`] followed by `act` as one op (see [`Self::batch_norm_then`]).
    pub fn instance_norm_then(
        &mut self,
        x: Var,
        affine: Option<Affine>,
        act: Option<Activation>,
    ) -> Result<Var> {
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
        let (stats, _) = batch_statistics(self.value(x), layout, StatsOver::Instance)?;
        self.record_norm(x, affine, layout, stats, (StatsOver::Instance, true, act))
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

    /// Records a norm with the given statistics; `how`: the groups, whether the statistics
    /// are this batch's, and the activation fused after it.
    fn record_norm(
        &mut self,
        x: Var,
        affine: Option<Affine>,
        layout: NormLayout,
        stats: GroupTensors,
        (over, batch_stats, act): (StatsOver, bool, Option<Activation>),
    ) -> Result<Var> {
        let xv = self.value(x).clone();
        let gamma = affine.map(|a| self.value(a.gamma).clone());
        let beta = affine.map(|a| self.value(a.beta).clone());
        let affine_values = (gamma.as_ref(), beta.as_ref());
        let y = normalize(&xv, layout, over, &stats, affine_values, act)?;
        let fused = act.map(|a| (y.clone(), a));
        let mut inputs = vec![x];
        inputs.extend(affine.iter().flat_map(|a| [a.gamma, a.beta]));
        Ok(self.record(y, &inputs, || NormBackward {
            x: xv,
            layout,
            over,
            stats,
            gamma,
            batch_stats,
            fused,
        }))
    }
}

/// act((x - mean) * invstd * gamma + beta) per group, on x's device.
fn normalize(
    x: &Tensor,
    layout: NormLayout,
    over: StatsOver,
    stats: &GroupTensors,
    (gamma, beta): (Option<&Tensor>, Option<&Tensor>),
    act: Option<Activation>,
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
            Some((mean, invstd)),
            (gamma, beta),
            act,
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
    if let Some(act) = act {
        let normalized = std::mem::take(&mut y);
        y = vec![0.0; normalized.len()];
        activate(&normalized, act, &mut y);
    }
    Tensor::from_vec(x.shape().clone(), y)
}
