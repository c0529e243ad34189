//! Whole-tensor sum and its fill backward (`kernels/reduce.cu`), and the per-block double
//! partial sums that the sum and the losses share.

use std::sync::Arc;

use cudarc::driver::{CudaViewMut, LaunchConfig, PushKernelArg};

use super::{CudaBackend, CudaResult, DeviceBuffer, err, launch_1d};

impl CudaBackend {
    /// Runs `launch` with a pooled buffer of one double per block of `config`, then adds the
    /// blocks' partial sums on the host in a fixed order (deterministic, in f64).
    pub(super) fn sum_of_block_partials(
        self: &Arc<Self>,
        config: LaunchConfig,
        launch: impl FnOnce(&mut CudaViewMut<'_, f64>) -> CudaResult<()>,
    ) -> CudaResult<f64> {
        let blocks = config.grid_dim.0 as usize;
        let mut scratch = self.alloc(2 * blocks)?;
        // SAFETY: 2 * blocks floats are exactly `blocks` doubles, and the kernel writes
        // every one of them (one per block) before they are read.
        let mut partial = unsafe { scratch.slice_mut().transmute_mut::<f64>(blocks) }
            .ok_or("partial-sum buffer too small")?;
        launch(&mut partial)?;
        Ok(self.download(&partial)?.iter().sum())
    }

    /// Sum of all elements (per-block double partial sums, added on the host in f64).
    pub fn launch_sum(self: &Arc<Self>, x: &DeviceBuffer) -> CudaResult<f64> {
        let config = launch_1d(x.len());
        self.sum_of_block_partials(config, |partial| {
            let n = x.len() as i64;
            let mut l = self.stream.launch_builder(&self.functions.sum_partial);
            l.arg(x.slice()).arg(&n).arg(partial);
            // SAFETY: matches sum_partial_f32(const float*, long long, double*); `partial`
            // holds one double per block.
            unsafe { l.launch(config) }.map_err(err("sum_partial_f32"))?;
            Ok(())
        })
    }

    /// `n` copies of `value` (the backward of sum and mean).
    pub fn launch_fill(self: &Arc<Self>, n: usize, value: f32) -> CudaResult<DeviceBuffer> {
        let mut y = self.alloc(n)?;
        let len = n as i64;
        let mut l = self.stream.launch_builder(&self.functions.fill);
        l.arg(y.slice_mut()).arg(&len).arg(&value);
        // SAFETY: matches fill_f32(float*, long long, float); `y` holds n floats.
        unsafe { l.launch(launch_1d(n)) }.map_err(err("fill_f32"))?;
        Ok(y)
    }

    /// [`Self::launch_sum`] on host data.
    pub fn sum(self: &Arc<Self>, x: &[f32]) -> CudaResult<f64> {
        self.launch_sum(&self.upload_buffer(x)?)
    }

    /// [`Self::launch_fill`], copied to the host.
    pub fn fill(self: &Arc<Self>, n: usize, value: f32) -> CudaResult<Vec<f32>> {
        self.launch_fill(n, value)?.to_host()
    }
}
