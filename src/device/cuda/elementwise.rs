//! Element-wise kernels (`kernels/elementwise.cu`): activations, dropout, add / mul, scale.

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, err, launch_1d};
use crate::device::kernel_codes;
use crate::ops::elementwise::Activation;

impl CudaBackend {
    /// `act(x)` on the GPU (host in, host out). The output buffer starts as NaN, so an element
    /// the kernel fails to write shows.
    pub fn activation(&self, x: &[f32], act: Activation) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let dx = self.upload(x)?;
        let mut dy = self.poisoned(x.len())?;
        let (kind, slope) = kernel_codes::activation(Some(act));
        let n = x.len() as u32;
        let mut b = s.launch_builder(&self.functions.activation_fwd);
        b.arg(&dx).arg(&mut dy).arg(&n).arg(&kind).arg(&slope);
        // SAFETY: argument types and order match activation_fwd_f32; both buffers hold n floats.
        unsafe { b.launch(launch_1d(x.len())) }.map_err(err("activation_fwd_f32"))?;
        self.download(&dy)
    }

    /// `dy * act'(x)` on the GPU, with `y = act(x)`.
    pub fn activation_backward(
        &self,
        dy: &[f32],
        x: &[f32],
        y: &[f32],
        act: Activation,
    ) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let (ddy, dx_in, dy_out) = (self.upload(dy)?, self.upload(x)?, self.upload(y)?);
        let mut dx = self.poisoned(x.len())?;
        let (kind, slope) = kernel_codes::activation(Some(act));
        let n = x.len() as u32;
        let mut b = s.launch_builder(&self.functions.activation_bwd);
        b.arg(&ddy)
            .arg(&dx_in)
            .arg(&dy_out)
            .arg(&mut dx)
            .arg(&n)
            .arg(&kind)
            .arg(&slope);
        // SAFETY: matches activation_bwd_f32; all buffers hold n floats.
        unsafe { b.launch(launch_1d(x.len())) }.map_err(err("activation_bwd_f32"))?;
        self.download(&dx)
    }

    /// Training-mode dropout with the CPU's counter-based mask.
    pub fn dropout(&self, x: &[f32], p: f64, seed: u64) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let dx = self.upload(x)?;
        let mut dy = self.poisoned(x.len())?;
        let (n, scale) = (x.len() as u32, (1.0 / (1.0 - p)) as f32);
        let mut b = s.launch_builder(&self.functions.dropout);
        b.arg(&dx)
            .arg(&mut dy)
            .arg(&n)
            .arg(&p)
            .arg(&scale)
            .arg(&seed);
        // SAFETY: matches dropout_f32; both buffers hold n floats.
        unsafe { b.launch(launch_1d(x.len())) }.map_err(err("dropout_f32"))?;
        self.download(&dy)
    }

    /// `a + b` or (`multiply`) `a * b`, element by element (same lengths).
    pub fn binary(&self, a: &[f32], b: &[f32], multiply: bool) -> CudaResult<Vec<f32>> {
        if a.len() != b.len() {
            return Err(format!(
                "binary op: lengths {} and {} differ",
                a.len(),
                b.len()
            ));
        }
        let s = &self.stream;
        let (da, db) = (self.upload(a)?, self.upload(b)?);
        let mut y = self.poisoned(a.len())?;
        let (n, kind) = (a.len() as u32, kernel_codes::binary(multiply));
        let mut l = s.launch_builder(&self.functions.binary);
        l.arg(&da).arg(&db).arg(&mut y).arg(&n).arg(&kind);
        // SAFETY: matches binary_f32; all three buffers hold n floats.
        unsafe { l.launch(launch_1d(a.len())) }.map_err(err("binary_f32"))?;
        self.download(&y)
    }

    /// `factor * x`.
    pub fn scale(&self, x: &[f32], factor: f32) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let dx = self.upload(x)?;
        let mut y = self.poisoned(x.len())?;
        let n = x.len() as u32;
        let mut l = s.launch_builder(&self.functions.scale);
        l.arg(&dx).arg(&mut y).arg(&n).arg(&factor);
        // SAFETY: matches scale_f32; both buffers hold n floats.
        unsafe { l.launch(launch_1d(x.len())) }.map_err(err("scale_f32"))?;
        self.download(&y)
    }
}
