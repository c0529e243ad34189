//! Batch and instance norm (`kernels/norm.cu`), optionally fused with the activation that follows:
//! device-buffer launchers, host wrappers for the parity tests, and timing.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::{CudaBackend, CudaResult, err, launch_1d};
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
    /// The kernels' (n, c, s, per_sample) ints.
    fn args(self) -> [i32; 4] {
        [self.n, self.c, self.s, self.per_sample as usize].map(|v| v as i32)
    }
    /// One 256-thread block per group (the statistics and gradient-sum kernels).
    fn per_group(self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.groups() as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// A norm's per-group statistics on the device (`var`: the biased variance).
struct NormStats {
    mean: CudaSlice<f32>,
    var: CudaSlice<f32>,
    invstd: CudaSlice<f32>,
}

impl CudaBackend {
    /// Batch norm (`per_sample` false) or instance norm (true) in training mode with batch
    /// statistics, followed by `act` when given (fused): returns y, the group means and the
    /// biased group variances. Absent gamma / beta are passed as ones / zeros.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn norm_forward(
        &self,
        x: &[f32],
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        gamma: &[f32],
        beta: &[f32],
        act: Option<Activation>,
    ) -> CudaResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let shape = NormShape::new((n, c, s), per_sample);
        let (dx, dg, db) = (self.upload(x)?, self.upload(gamma)?, self.upload(beta)?);
        let groups = shape.groups();
        let mut stats = NormStats {
            mean: self.poisoned(groups)?,
            var: self.poisoned(groups)?,
            invstd: self.poisoned(groups)?,
        };
        let mut y = self.poisoned(x.len())?;
        self.launch_norm_forward(shape, &dx, (&dg, &db), &mut stats, &mut y, act)?;
        let out = |d| self.download(d);
        Ok((out(&y)?, out(&stats.mean)?, out(&stats.var)?))
    }

    /// Gradients of [`Self::norm_forward`] given its statistics: (dx, dgamma, dbeta). With a fused
    /// activation, `fused` holds its output y (act' is taken from y) and the activation.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn norm_backward(
        &self,
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
        let shape = NormShape::new((n, c, s), per_sample);
        let groups = shape.groups();
        let up = |v: &[f32]| self.upload(v);
        let (ddy, dx_in, dg) = (up(dy)?, up(x)?, up(gamma)?);
        let stats = NormStats {
            mean: up(mean)?,
            var: up(&[0.0])?,
            invstd: up(invstd)?,
        };
        // The fused activation's output (read only with one).
        let y = up(fused.map_or(&[0.0][..], |f| f.0))?;
        let mut sums = self.poisoned(2 * groups)?;
        let mut dx = self.poisoned(x.len())?;
        let fused = fused.map(|f| (&y, f.1));
        self.launch_norm_backward(
            shape,
            (&ddy, &dx_in, &dg),
            &stats,
            fused,
            batch_stats,
            (&mut sums, &mut dx),
        )?;
        let sums = self.download(&sums)?;
        let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
        for g in 0..groups {
            dbeta[g % c] += sums[2 * g];
            dgamma[g % c] += sums[2 * g + 1];
        }
        Ok((self.download(&dx)?, dgamma, dbeta))
    }

    /// `norm_stats_f32` then `norm_apply_f32` on device buffers: `stats` and `y` are written.
    fn launch_norm_forward(
        &self,
        shape: NormShape,
        x: &CudaSlice<f32>,
        (gamma, beta): (&CudaSlice<f32>, &CudaSlice<f32>),
        stats: &mut NormStats,
        y: &mut CudaSlice<f32>,
        act: Option<Activation>,
    ) -> CudaResult<()> {
        let st = &self.stream;
        let (act_kind, slope) = kernel_codes::activation(act);
        let [ni, ci, si, ps] = shape.args();
        let eps = crate::ops::norm::EPS;
        let mut b = st.launch_builder(&self.functions.norm_stats);
        b.arg(x)
            .arg(&mut stats.mean)
            .arg(&mut stats.var)
            .arg(&mut stats.invstd)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&eps);
        // SAFETY: matches norm_stats_f32; one block per group, group buffers hold `groups` floats.
        unsafe { b.launch(shape.per_group()) }.map_err(err("norm_stats_f32"))?;
        let mut b = st.launch_builder(&self.functions.norm_apply);
        b.arg(x)
            .arg(&stats.mean)
            .arg(&stats.invstd)
            .arg(gamma)
            .arg(beta)
            .arg(y)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_apply_f32; x and y hold n * c * s floats, gamma / beta c.
        unsafe { b.launch(launch_1d(shape.len())) }.map_err(err("norm_apply_f32"))?;
        Ok(())
    }

    /// `norm_grad_sums_f32` then `norm_backward_f32` on device buffers: `sums` (two per group)
    /// and `dx` are written. `fused`: the fused activation's output and the activation.
    fn launch_norm_backward(
        &self,
        shape: NormShape,
        (dy, x, gamma): (&CudaSlice<f32>, &CudaSlice<f32>, &CudaSlice<f32>),
        stats: &NormStats,
        fused: Option<(&CudaSlice<f32>, Activation)>,
        batch_stats: bool,
        (sums, dx): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
    ) -> CudaResult<()> {
        let st = &self.stream;
        let (act_kind, slope) = kernel_codes::activation(fused.map(|f| f.1));
        // Without a fused activation the kernels do not read y: any buffer stands in.
        let y = fused.map_or(dy, |f| f.0);
        let [ni, ci, si, ps] = shape.args();
        let bs = batch_stats as i32;
        let mut b = st.launch_builder(&self.functions.norm_grad_sums);
        b.arg(dy)
            .arg(y)
            .arg(x)
            .arg(&stats.mean)
            .arg(&stats.invstd)
            .arg(&mut *sums)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_grad_sums_f32; sums holds 2 * groups floats.
        unsafe { b.launch(shape.per_group()) }.map_err(err("norm_grad_sums_f32"))?;
        let mut b = st.launch_builder(&self.functions.norm_backward);
        b.arg(dy)
            .arg(y)
            .arg(x)
            .arg(&stats.mean)
            .arg(&stats.invstd)
            .arg(gamma)
            .arg(&*sums)
            .arg(dx)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&bs)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_backward_f32; dy, x and dx hold n * c * s floats.
        unsafe { b.launch(launch_1d(shape.len())) }.map_err(err("norm_backward_f32"))?;
        Ok(())
    }

    /// Median milliseconds of a norm's forward (statistics + apply, fused LeakyReLU(0.2)) and
    /// backward (gradient sums + dx with batch statistics) on device buffers.
    pub fn time_norm(
        &self,
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        reps: usize,
    ) -> CudaResult<(f64, f64)> {
        let shape = NormShape::new((n, c, s), per_sample);
        let filled = |len: usize, v: f32| self.upload(&vec![v; len]);
        let (x, dy, gamma, beta) = (
            filled(shape.len(), 0.5)?,
            filled(shape.len(), 0.25)?,
            filled(c, 1.0)?,
            filled(c, 0.0)?,
        );
        let groups = shape.groups();
        let mut stats = NormStats {
            mean: filled(groups, 0.0)?,
            var: filled(groups, 0.0)?,
            invstd: filled(groups, 0.0)?,
        };
        let (mut y, mut dx, mut sums) = (
            filled(shape.len(), 0.0)?,
            filled(shape.len(), 0.0)?,
            filled(2 * groups, 0.0)?,
        );
        let act = Some(Activation::LeakyRelu(0.2));
        let forward = self.time_ms(reps, || {
            self.launch_norm_forward(shape, &x, (&gamma, &beta), &mut stats, &mut y, act)
        })?;
        let backward = self.time_ms(reps, || {
            let fused = act.map(|a| (&y, a));
            self.launch_norm_backward(
                shape,
                (&dy, &x, &gamma),
                &stats,
                fused,
                true,
                (&mut sums, &mut dx),
            )
        })?;
        Ok((forward, backward))
    }
}
