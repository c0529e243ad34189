//! Fused Adam over a parameter arena (`kernels/adam.cu`), and its timing.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{CudaBackend, CudaResult, DeviceBuffer, err, launch_1d};
use crate::optim::adam::{AdamConfig, AdamFactors};

impl CudaBackend {
    /// One fused Adam step over a whole arena on the device: parameters `p` and moments `m`,
    /// `v` updated in place from gradients `g` (all of one length).
    pub fn launch_adam(
        &self,
        p: &mut DeviceBuffer,
        g: &DeviceBuffer,
        (m, v): (&mut DeviceBuffer, &mut DeviceBuffer),
        factors: &AdamFactors,
    ) -> CudaResult<()> {
        if [g.len(), m.len(), v.len()] != [p.len(); 3] {
            return Err(format!(
                "adam: {} parameters, {} gradients, {} / {} moments",
                p.len(),
                g.len(),
                m.len(),
                v.len()
            ));
        }
        let n = p.len();
        self.enqueue_adam(
            n,
            p.slice_mut(),
            g.slice(),
            (m.slice_mut(), v.slice_mut()),
            factors,
        )
    }

    fn enqueue_adam(
        &self,
        n: usize,
        p: &mut CudaSlice<f32>,
        g: &CudaSlice<f32>,
        (m, v): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
        f: &AdamFactors,
    ) -> CudaResult<()> {
        let len = n as u32;
        let mut b = self.stream.launch_builder(&self.functions.adam);
        b.arg(p)
            .arg(g)
            .arg(m)
            .arg(v)
            .arg(&len)
            .arg(&f.beta1)
            .arg(&f.beta2)
            .arg(&f.eps)
            .arg(&f.weight_decay)
            .arg(&f.step_size)
            .arg(&f.bias_correction2_sqrt);
        // SAFETY: matches adam_step_f32(float* p, const float* g, float* m, float* v,
        // unsigned n, float b1, float b2, float eps, float wd, float step_size,
        // float bc2_sqrt); all four buffers hold at least n floats.
        unsafe { b.launch(launch_1d(n)) }.map_err(err("adam_step_f32"))?;
        Ok(())
    }

    /// [`Self::launch_adam`] on host data at step `t` (1-based) and learning rate `lr`.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn adam_step(
        self: &Arc<Self>,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        cfg: &AdamConfig,
        lr: f64,
        t: i32,
    ) -> CudaResult<()> {
        let up = |x: &[f32]| self.upload_buffer(x);
        let (mut dp, dg, mut dm, mut dv) = (up(p)?, up(g)?, up(m)?, up(v)?);
        self.launch_adam(&mut dp, &dg, (&mut dm, &mut dv), &cfg.factors(lr, t))?;
        p.copy_from_slice(&dp.to_host()?);
        m.copy_from_slice(&dm.to_host()?);
        v.copy_from_slice(&dv.to_host()?);
        Ok(())
    }

    /// Median milliseconds of one fused Adam step over `n` parameters.
    pub fn time_adam(&self, n: usize, reps: usize) -> CudaResult<f64> {
        let st = &self.stream;
        let mut p = self.upload(&vec![0.5f32; n])?;
        let g = self.upload(&vec![0.01f32; n])?;
        let zeros = || st.alloc_zeros::<f32>(n).map_err(err("alloc"));
        let (mut m, mut v) = (zeros()?, zeros()?);
        let factors = AdamConfig::gan().factors(2e-4, 10);
        self.time_ms(reps, || {
            self.enqueue_adam(n, &mut p, &g, (&mut m, &mut v), &factors)
        })
    }
}
