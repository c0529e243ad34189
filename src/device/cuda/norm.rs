//! Batch and instance norm (`kernels/norm.cu`), optionally fused with the activation that follows:
//! device-buffer launchers, host wrappers for the parity tests, and timing.

use std::sync::Arc;

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{
    CudaBackend, CudaResult, DeviceBuffer, NULL, arg_or_null, err, launch_1d, launch_planes,
};
use crate::device::kernel_codes;
use crate::ops::elementwise::Activation;

/// An N, C, spatial tensor under batch norm (`per_sample` false: one group per channel) or
/// instance norm (true: one group per sample and channel).
#[derive(Clone, Copy, Debug)]
struct NormShape {
    n: usize,
    c: usize,
    s: usize,
    per_sample: bool,
}

/// Elements a block reduces, a part of a group (`kernels/norm.cu`): 32 a thread, so that a
/// batch-1 instance norm of 64 x 256 x 256 runs 512 blocks rather than 64. Fixed, not
/// derived from the device, so that every GPU adds in the same order.
const NORM_PART: usize = 8192;

impl NormShape {
    fn new((n, c, s): (usize, usize, usize), per_sample: bool) -> NormShape {
        NormShape {
            n,
            c,
            s,
            per_sample,
        }
    }
    fn len(self) -> usize {
        self.n * self.c * self.s
    }
    fn groups(self) -> usize {
        if self.per_sample {
            self.n * self.c
        } else {
            self.c
        }
    }
    /// Elements per group.
    fn group_len(self) -> usize {
        if self.per_sample {
            self.s
        } else {
            self.n * self.s
        }
    }
    /// Parts of [`NORM_PART`] elements per group, one block each in the reductions.
    fn parts(self) -> usize {
        self.group_len().div_ceil(NORM_PART).max(1)
    }
    /// The kernels' (n, c, s, per_sample) ints.
    fn args(self) -> [i32; 4] {
        [self.n, self.c, self.s, self.per_sample as usize].map(|v| v as i32)
    }
    /// The reductions' grid: a 256-thread block per group and part.
    fn per_part(self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.groups() as u32, self.parts() as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }
    /// The element-wise kernels' grid (`launch_planes`).
    fn per_plane(self) -> LaunchConfig {
        launch_planes(self.n * self.c, self.s)
    }
}

/// A norm's per-group statistics on the device (`var`: the biased variance).
pub struct NormStats {
    pub mean: DeviceBuffer,
    pub var: DeviceBuffer,
    pub invstd: DeviceBuffer,
}

/// The gradients of a norm: dx, and (when asked for) per channel dgamma and dbeta.
pub struct NormGrads {
    pub dx: DeviceBuffer,
    pub affine: Option<(DeviceBuffer, DeviceBuffer)>,
}

impl CudaBackend {
    /// Per-group mean, biased variance and 1 / sqrt(var + eps) of x (a block per part of
    /// `NORM_PART` elements, merged in order where a group has several): batch norm
    /// (`per_sample` false) or instance norm (true).
    pub fn launch_norm_stats(
        self: &Arc<Self>,
        x: &DeviceBuffer,
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
    ) -> CudaResult<NormStats> {
        let shape = NormShape::new((n, c, s), per_sample);
        let groups = shape.groups();
        let mut stats = NormStats {
            mean: self.alloc(groups)?,
            var: self.alloc(groups)?,
            invstd: self.alloc(groups)?,
        };
        let [ni, ci, si, ps] = shape.args();
        let eps = crate::ops::norm::EPS;
        let parts = shape.parts();
        // Per (group, part): mean and sum of squared deviations; null with one part, whose
        // block stores the statistics itself.
        let mut pairs = (parts > 1)
            .then(|| self.alloc(2 * groups * parts))
            .transpose()?;
        let part = NORM_PART as i32;
        let mut b = self.stream.launch_builder(&self.functions.norm_stats);
        b.arg(x.slice())
            .arg(stats.mean.slice_mut())
            .arg(stats.var.slice_mut())
            .arg(stats.invstd.slice_mut());
        match pairs.as_mut() {
            Some(p) => b.arg(p.slice_mut()),
            None => b.arg(&NULL),
        };
        b.arg(&ni).arg(&ci).arg(&si).arg(&ps).arg(&part).arg(&eps);
        // SAFETY: matches norm_stats_f32; a block per group and part, group buffers hold
        // `groups` floats and `pairs` two per group and part where there are several parts
        // (null, and not written, with one).
        unsafe { b.launch(shape.per_part()) }.map_err(err("norm_stats_f32"))?;
        if let Some(pairs) = pairs {
            let (g, len, count) = (groups as i32, shape.group_len() as i32, parts as i32);
            let mut b = self.stream.launch_builder(&self.functions.norm_stats_merge);
            b.arg(pairs.slice())
                .arg(stats.mean.slice_mut())
                .arg(stats.var.slice_mut())
                .arg(stats.invstd.slice_mut())
                .arg(&g)
                .arg(&len)
                .arg(&part)
                .arg(&count)
                .arg(&eps);
            // SAFETY: matches norm_stats_merge_f32; `pairs` holds two floats per group and
            // part, the outputs one per group.
            unsafe { b.launch(launch_1d(groups)) }.map_err(err("norm_stats_merge_f32"))?;
        }
        Ok(stats)
    }

    /// y = act((x - mean) * invstd * gamma + beta) with the given group statistics (`mean`,
    /// `invstd`: one per group; None: mean 0 and invstd 1); absent gamma / beta are ones /
    /// zeros. Absent operands go to the kernel as null pointers, which it reads as such.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn launch_norm_apply(
        self: &Arc<Self>,
        x: &DeviceBuffer,
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        stats: Option<(&DeviceBuffer, &DeviceBuffer)>,
        (gamma, beta): (Option<&DeviceBuffer>, Option<&DeviceBuffer>),
        act: Option<Activation>,
    ) -> CudaResult<DeviceBuffer> {
        let shape = NormShape::new((n, c, s), per_sample);
        let mut y = self.alloc(shape.len())?;
        let (act_kind, slope) = kernel_codes::activation(act);
        let [ni, ci, si, ps] = shape.args();
        let mut b = self.stream.launch_builder(&self.functions.norm_apply);
        b.arg(x.slice());
        for p in [stats.map(|s| s.0), stats.map(|s| s.1), gamma, beta] {
            arg_or_null(&mut b, p);
        }
        b.arg(y.slice_mut())
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_apply_f32; x and y hold n * c * s floats, gamma / beta c and
        // mean / invstd one per group, or are null.
        unsafe { b.launch(shape.per_plane()) }.map_err(err("norm_apply_f32"))?;
        Ok(y)
    }

    /// Gradients of a norm given dy and the statistics it used (`batch_stats`: whether they
    /// were this batch's, so that they depend on x). With a fused activation, `fused` holds
    /// its output y (act' is taken from y) and the activation. Absent gamma is ones. The
    /// per-channel dgamma and dbeta are summed on the device only `with_affine`.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn launch_norm_backward(
        self: &Arc<Self>,
        (dy, x): (&DeviceBuffer, &DeviceBuffer),
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        (mean, invstd): (&DeviceBuffer, &DeviceBuffer),
        gamma: Option<&DeviceBuffer>,
        batch_stats: bool,
        fused: Option<(&DeviceBuffer, Activation)>,
        with_affine: bool,
    ) -> CudaResult<NormGrads> {
        let shape = NormShape::new((n, c, s), per_sample);
        let (sums, dx) =
            self.enqueue_norm_backward((dy, x), shape, (mean, invstd), gamma, batch_stats, fused)?;
        let affine = with_affine
            .then(|| self.launch_channel_sums(&sums, shape))
            .transpose()?;
        Ok(NormGrads { dx, affine })
    }

    /// dgamma and dbeta per channel from the per-group sums (`norm_channel_sums_f32`).
    fn launch_channel_sums(
        self: &Arc<Self>,
        sums: &DeviceBuffer,
        shape: NormShape,
    ) -> CudaResult<(DeviceBuffer, DeviceBuffer)> {
        let (mut dgamma, mut dbeta) = (self.alloc(shape.c)?, self.alloc(shape.c)?);
        let [ni, ci, _, ps] = shape.args();
        let mut b = self
            .stream
            .launch_builder(&self.functions.norm_channel_sums);
        b.arg(sums.slice())
            .arg(dgamma.slice_mut())
            .arg(dbeta.slice_mut())
            .arg(&ni)
            .arg(&ci)
            .arg(&ps);
        // SAFETY: matches norm_channel_sums_f32(const float* sums, float* dgamma,
        // float* dbeta, int n, int c, int per_sample); sums holds two floats per group,
        // dgamma / dbeta c.
        unsafe { b.launch(launch_1d(shape.c)) }.map_err(err("norm_channel_sums_f32"))?;
        Ok((dgamma, dbeta))
    }

    /// The two backward kernels: per-group sums (dbeta, dgamma terms; two per group) and dx.
    fn enqueue_norm_backward(
        self: &Arc<Self>,
        (dy, x): (&DeviceBuffer, &DeviceBuffer),
        shape: NormShape,
        (mean, invstd): (&DeviceBuffer, &DeviceBuffer),
        gamma: Option<&DeviceBuffer>,
        batch_stats: bool,
        fused: Option<(&DeviceBuffer, Activation)>,
    ) -> CudaResult<(DeviceBuffer, DeviceBuffer)> {
        let sums = self.enqueue_norm_grad_sums((dy, x), shape, Some((mean, invstd)), fused)?;
        let (act_kind, slope) = kernel_codes::activation(fused.map(|f| f.1));
        // Without a fused activation the kernels do not read y: any buffer stands in.
        let y = fused.map_or(dy, |f| f.0);
        let [ni, ci, si, ps] = shape.args();
        let mut dx = self.alloc(shape.len())?;
        let bs = batch_stats as i32;
        let mut b = self.stream.launch_builder(&self.functions.norm_backward);
        b.arg(dy.slice())
            .arg(y.slice())
            .arg(x.slice())
            .arg(mean.slice())
            .arg(invstd.slice());
        arg_or_null(&mut b, gamma);
        b.arg(sums.slice())
            .arg(dx.slice_mut())
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&bs)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_backward_f32; dy, x and dx hold n * c * s floats.
        unsafe { b.launch(shape.per_plane()) }.map_err(err("norm_backward_f32"))?;
        Ok((sums, dx))
    }

    /// `norm_grad_sums_f32`: two sums per group, the dbeta and dgamma terms (statistics
    /// None: mean 0 and invstd 1, so the first sum is a conv bias's gradient).
    fn enqueue_norm_grad_sums(
        self: &Arc<Self>,
        (dy, x): (&DeviceBuffer, &DeviceBuffer),
        shape: NormShape,
        stats: Option<(&DeviceBuffer, &DeviceBuffer)>,
        fused: Option<(&DeviceBuffer, Activation)>,
    ) -> CudaResult<DeviceBuffer> {
        let (act_kind, slope) = kernel_codes::activation(fused.map(|f| f.1));
        // Without a fused activation the kernel does not read y: any buffer stands in.
        let y = fused.map_or(dy, |f| f.0);
        let [ni, ci, si, ps] = shape.args();
        let (groups, parts) = (shape.groups(), shape.parts());
        let part = NORM_PART as i32;
        // With several parts the kernel writes a pair per (group, part), merged below.
        let mut pairs = self.alloc(2 * groups * parts)?;
        let mut b = self.stream.launch_builder(&self.functions.norm_grad_sums);
        b.arg(dy.slice()).arg(y.slice()).arg(x.slice());
        arg_or_null(&mut b, stats.map(|s| s.0));
        arg_or_null(&mut b, stats.map(|s| s.1));
        b.arg(pairs.slice_mut())
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&part)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_grad_sums_f32; a block per group and part, `pairs` holds two
        // floats per group and part, mean / invstd one per group or null.
        unsafe { b.launch(shape.per_part()) }.map_err(err("norm_grad_sums_f32"))?;
        if parts == 1 {
            return Ok(pairs);
        }
        let mut sums = self.alloc(2 * groups)?;
        let (g, count) = (groups as i32, parts as i32);
        let mut b = self.stream.launch_builder(&self.functions.norm_sums_merge);
        b.arg(pairs.slice())
            .arg(sums.slice_mut())
            .arg(&g)
            .arg(&count);
        // SAFETY: matches norm_sums_merge_f32; `pairs` holds two floats per group and part,
        // `sums` two per group.
        unsafe { b.launch(launch_1d(groups)) }.map_err(err("norm_sums_merge_f32"))?;
        Ok(sums)
    }

    /// `y + bias` per channel of an N, C, spatial tensor (a conv's bias): the apply kernel
    /// with identity statistics and no gamma, which computes exactly y + beta.
    pub fn launch_bias_add(
        self: &Arc<Self>,
        y: &DeviceBuffer,
        bias: &DeviceBuffer,
        (n, c, s): (usize, usize, usize),
    ) -> CudaResult<DeviceBuffer> {
        self.launch_norm_apply(y, (n, c, s), false, None, (None, Some(bias)), None)
    }

    /// Batch norm's running statistics after one training call, as new buffers (mean,
    /// variance): `(1 - momentum) running + momentum batch`, the variance's batch term
    /// times `unbias`, as `ops::norm::RunningStats::update`. One launch.
    pub fn launch_running_stats(
        self: &Arc<Self>,
        running: (&DeviceBuffer, &DeviceBuffer),
        batch: (&DeviceBuffer, &DeviceBuffer),
        momentum: f32,
        unbias: f32,
    ) -> CudaResult<(DeviceBuffer, DeviceBuffer)> {
        let c = running.0.len();
        if [running.1.len(), batch.0.len(), batch.1.len()] != [c; 3] {
            return Err(format!(
                "running statistics: {c} channels, but arrays of {}, {} and {}",
                running.1.len(),
                batch.0.len(),
                batch.1.len()
            ));
        }
        let (mut mean, mut var) = (self.alloc(c)?, self.alloc(c)?);
        let channels = c as i32;
        let mut b = self.stream.launch_builder(&self.functions.running_stats);
        b.arg(running.0.slice())
            .arg(running.1.slice())
            .arg(batch.0.slice())
            .arg(batch.1.slice())
            .arg(mean.slice_mut())
            .arg(var.slice_mut())
            .arg(&channels)
            .arg(&momentum)
            .arg(&unbias);
        // SAFETY: matches running_stats_f32(const float* x4, float* x2, int c, float, float);
        // every array holds c floats (checked above).
        unsafe { b.launch(launch_1d(c)) }.map_err(err("running_stats_f32"))?;
        Ok((mean, var))
    }

    /// A conv bias's gradient, the per-channel sum of dy (N, C, spatial): the norms' dbeta
    /// with identity statistics, without the dx pass.
    pub fn launch_bias_grad(
        self: &Arc<Self>,
        dy: &DeviceBuffer,
        (n, c, s): (usize, usize, usize),
    ) -> CudaResult<DeviceBuffer> {
        let shape = NormShape::new((n, c, s), false);
        let sums = self.enqueue_norm_grad_sums((dy, dy), shape, None, None)?;
        Ok(self.launch_channel_sums(&sums, shape)?.1)
    }

    /// Batch norm (`per_sample` false) or instance norm (true) in training mode with batch
    /// statistics, followed by `act` when given (fused), on host data: returns y, the group
    /// means and the biased group variances.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn norm_forward(
        self: &Arc<Self>,
        x: &[f32],
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        gamma: &[f32],
        beta: &[f32],
        act: Option<Activation>,
    ) -> CudaResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let up = |v| self.upload_buffer(v);
        let dx = up(x)?;
        let stats = self.launch_norm_stats(&dx, (n, c, s), per_sample)?;
        let y = self.launch_norm_apply(
            &dx,
            (n, c, s),
            per_sample,
            Some((&stats.mean, &stats.invstd)),
            (Some(&up(gamma)?), Some(&up(beta)?)),
            act,
        )?;
        Ok((y.to_host()?, stats.mean.to_host()?, stats.var.to_host()?))
    }

    /// [`Self::launch_norm_backward`] on host data: (dx, dgamma, dbeta).
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn norm_backward(
        self: &Arc<Self>,
        dy: &[f32],
        x: &[f32],
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        mean: &[f32],
        invstd: &[f32],
        gamma: &[f32],
        batch_stats: bool,
        fused: Option<(&[f32], Activation)>,
    ) -> CudaResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let up = |v| self.upload_buffer(v);
        let y = fused.map(|f| up(f.0)).transpose()?;
        let grads = self.launch_norm_backward(
            (&up(dy)?, &up(x)?),
            (n, c, s),
            per_sample,
            (&up(mean)?, &up(invstd)?),
            Some(&up(gamma)?),
            batch_stats,
            y.as_ref().zip(fused.map(|f| f.1)),
            true,
        )?;
        let (dgamma, dbeta) = grads.affine.expect("asked for");
        Ok((grads.dx.to_host()?, dgamma.to_host()?, dbeta.to_host()?))
    }

    /// Median milliseconds of a norm's forward (statistics + apply, fused LeakyReLU(0.2)) and
    /// backward (gradient sums + dx with batch statistics) on device buffers.
    pub fn time_norm(
        self: &Arc<Self>,
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        reps: usize,
    ) -> CudaResult<(f64, f64)> {
        let shape = NormShape::new((n, c, s), per_sample);
        let filled = |len: usize, v: f32| self.upload_buffer(&vec![v; len]);
        let (x, dy, gamma, beta) = (
            filled(shape.len(), 0.5)?,
            filled(shape.len(), 0.25)?,
            filled(c, 1.0)?,
            filled(c, 0.0)?,
        );
        let act = Some(Activation::LeakyRelu(0.2));
        let stats = self.launch_norm_stats(&x, (n, c, s), per_sample)?;
        let forward = self.time_ms(reps, || {
            let stats = self.launch_norm_stats(&x, (n, c, s), per_sample)?;
            let (g, b) = (Some(&gamma), Some(&beta));
            let statistics = Some((&stats.mean, &stats.invstd));
            self.launch_norm_apply(&x, (n, c, s), per_sample, statistics, (g, b), act)
                .map(drop)
        })?;
        let y = filled(shape.len(), 0.5)?;
        let backward = self.time_ms(reps, || {
            self.enqueue_norm_backward(
                (&dy, &x),
                shape,
                (&stats.mean, &stats.invstd),
                Some(&gamma),
                true,
                act.map(|a| (&y, a)),
            )
            .map(drop)
        })?;
        Ok((forward, backward))
    }
}
