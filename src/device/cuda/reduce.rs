//! Whole-tensor sum and its fill backward (`kernels/reduce.cu`).

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, err, launch_1d};

impl CudaBackend {
    /// Sum of all elements (per-block double partial sums, added here in f64).
    pub fn sum(&self, x: &[f32]) -> CudaResult<f64> {
        let s = &self.stream;
        let dx = self.upload(x)?;
        let cfg = launch_1d(x.len());
        let mut partial = self.upload(&vec![f64::NAN; cfg.grid_dim.0 as usize])?;
        let n = x.len() as i64;
        let mut l = s.launch_builder(&self.functions.sum_partial);
        l.arg(&dx).arg(&n).arg(&mut partial);
        // SAFETY: matches sum_partial_f32; `partial` holds one double per block.
        unsafe { l.launch(cfg) }.map_err(err("sum_partial_f32"))?;
        Ok(self.download(&partial)?.iter().sum())
    }

    /// `n` copies of `value` (the backward of sum and mean).
    pub fn fill(&self, n: usize, value: f32) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let mut y = self.poisoned(n)?;
        let len = n as i64;
        let mut l = s.launch_builder(&self.functions.fill);
        l.arg(&mut y).arg(&len).arg(&value);
        // SAFETY: matches fill_f32; `y` holds n floats.
        unsafe { l.launch(launch_1d(n)) }.map_err(err("fill_f32"))?;
        self.download(&y)
    }
}
