//! Fused Adam over a parameter arena (`kernels/adam.cu`), and its timing.

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, err, launch_1d};
use crate::optim::adam::AdamConfig;

impl CudaBackend {
    /// One fused Adam step over a whole arena (parameters, gradients, moments), step `t`
    /// (1-based) at learning rate `lr`; updates `p`, `m`, `v` in place.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn adam_step(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        cfg: &AdamConfig,
        lr: f64,
        t: i32,
    ) -> CudaResult<()> {
        let s = &self.stream;
        let (mut dp, dg, mut dm, mut dv) = (
            self.upload(p)?,
            self.upload(g)?,
            self.upload(m)?,
            self.upload(v)?,
        );
        let n = p.len() as u32;
        let (b1, b2, eps, wd) = (
            cfg.beta1 as f32,
            cfg.beta2 as f32,
            cfg.eps as f32,
            cfg.weight_decay as f32,
        );
        let step_size = (lr / (1.0 - cfg.beta1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - cfg.beta2.powi(t)).sqrt() as f32;
        let mut b = s.launch_builder(&self.functions.adam);
        b.arg(&mut dp)
            .arg(&dg)
            .arg(&mut dm)
            .arg(&mut dv)
            .arg(&n)
            .arg(&b1)
            .arg(&b2)
            .arg(&eps)
            .arg(&wd)
            .arg(&step_size)
            .arg(&bc2_sqrt);
        // SAFETY: matches adam_step_f32; the four buffers hold n floats.
        unsafe { b.launch(launch_1d(p.len())) }.map_err(err("adam_step_f32"))?;
        s.memcpy_dtoh(&dp, p).map_err(err("copy out"))?;
        s.memcpy_dtoh(&dm, m).map_err(err("copy out"))?;
        s.memcpy_dtoh(&dv, v).map_err(err("copy out"))?;
        Ok(())
    }

    /// Median milliseconds of one fused Adam step over `n` parameters.
    pub fn time_adam(&self, n: usize, reps: usize) -> CudaResult<f64> {
        let st = &self.stream;
        let mut p = self.upload(&vec![0.5f32; n])?;
        let g = self.upload(&vec![0.01f32; n])?;
        let (mut m, mut v) = (
            st.alloc_zeros::<f32>(n).map_err(err("alloc"))?,
            st.alloc_zeros::<f32>(n).map_err(err("alloc"))?,
        );
        let (nn, b1, b2, eps, wd, step, bc2) = (
            n as u32, 0.5f32, 0.999f32, 1e-8f32, 0.0f32, 2e-4f32, 0.05f32,
        );
        self.time_ms(reps, || {
            let mut b = st.launch_builder(&self.functions.adam);
            b.arg(&mut p)
                .arg(&g)
                .arg(&mut m)
                .arg(&mut v)
                .arg(&nn)
                .arg(&b1)
                .arg(&b2)
                .arg(&eps)
                .arg(&wd)
                .arg(&step)
                .arg(&bc2);
            // SAFETY: as in `adam_step`.
            unsafe { b.launch(launch_1d(n)) }
                .map(|_| ())
                .map_err(err("adam_step_f32"))
        })
    }
}
