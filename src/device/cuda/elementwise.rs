//! Element-wise kernels (`kernels/elementwise.cu`): activations, dropout, add / mul, scale.
//! `launch_*` run on device buffers (the ops call them); the host-slice forms beside them
//! copy in and out for the parity tests.

use std::sync::Arc;

use cudarc::driver::{DevicePtrMut, PushKernelArg};

use super::{CudaBackend, CudaResult, DeviceBuffer, err, launch_1d};
use crate::device::kernel_codes;
use crate::ops::elementwise::Activation;

impl CudaBackend {
    /// `act(x)`.
    pub fn launch_activation(
        self: &Arc<Self>,
        x: &DeviceBuffer,
        act: Activation,
    ) -> CudaResult<DeviceBuffer> {
        let mut y = self.alloc(x.len())?;
        let (kind, slope) = kernel_codes::activation(Some(act));
        let n = x.len() as u32;
        let mut b = self.stream.launch_builder(&self.functions.activation_fwd);
        b.arg(x.slice())
            .arg(y.slice_mut())
            .arg(&n)
            .arg(&kind)
            .arg(&slope);
        // SAFETY: matches activation_fwd_f32(const float*, float*, unsigned, int, float);
        // both buffers hold n floats.
        unsafe { b.launch(launch_1d(x.len())) }.map_err(err("activation_fwd_f32"))?;
        Ok(y)
    }

    /// dx of `act` given dy, its input x and output y.
    pub fn launch_activation_backward(
        self: &Arc<Self>,
        dy: &DeviceBuffer,
        x: &DeviceBuffer,
        y: &DeviceBuffer,
        act: Activation,
    ) -> CudaResult<DeviceBuffer> {
        let mut dx = self.alloc(x.len())?;
        let (kind, slope) = kernel_codes::activation(Some(act));
        let n = x.len() as u32;
        let mut b = self.stream.launch_builder(&self.functions.activation_bwd);
        b.arg(dy.slice())
            .arg(x.slice())
            .arg(y.slice())
            .arg(dx.slice_mut())
            .arg(&n)
            .arg(&kind)
            .arg(&slope);
        // SAFETY: matches activation_bwd_f32(dy, x, y, dx, n, kind, slope); all hold n floats.
        unsafe { b.launch(launch_1d(x.len())) }.map_err(err("activation_bwd_f32"))?;
        Ok(dx)
    }

    /// Inverted dropout with the CPU op's counter-based mask: element i is kept (and scaled
    /// by 1 / (1 - p)) exactly when the CPU keeps it for the same seed.
    pub fn launch_dropout(
        self: &Arc<Self>,
        x: &DeviceBuffer,
        p: f64,
        seed: u64,
    ) -> CudaResult<DeviceBuffer> {
        let mut y = self.alloc(x.len())?;
        let (n, scale) = (x.len() as u32, (1.0 / (1.0 - p)) as f32);
        let mut b = self.stream.launch_builder(&self.functions.dropout);
        b.arg(x.slice())
            .arg(y.slice_mut())
            .arg(&n)
            .arg(&p)
            .arg(&scale)
            .arg(&seed);
        // SAFETY: matches dropout_f32(const float*, float*, unsigned, double, float,
        // unsigned long long); both buffers hold n floats.
        unsafe { b.launch(launch_1d(x.len())) }.map_err(err("dropout_f32"))?;
        Ok(y)
    }

    /// `a + b`, or `a * b` with `multiply`; equal lengths.
    pub fn launch_binary(
        self: &Arc<Self>,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        multiply: bool,
    ) -> CudaResult<DeviceBuffer> {
        if a.len() != b.len() {
            return Err(format!(
                "binary op: lengths {} and {} differ",
                a.len(),
                b.len()
            ));
        }
        let mut y = self.alloc(a.len())?;
        let (n, kind) = (a.len() as u32, kernel_codes::binary(multiply));
        let mut l = self.stream.launch_builder(&self.functions.binary);
        l.arg(a.slice())
            .arg(b.slice())
            .arg(y.slice_mut())
            .arg(&n)
            .arg(&kind);
        // SAFETY: matches binary_f32(const float*, const float*, float*, unsigned, int);
        // all three hold n floats.
        unsafe { l.launch(launch_1d(a.len())) }.map_err(err("binary_f32"))?;
        Ok(y)
    }

    /// `dst[at..at + src.len()] += src` in place: the gradient arena's accumulation.
    pub fn launch_add_into(
        &self,
        dst: &mut DeviceBuffer,
        at: usize,
        src: &DeviceBuffer,
    ) -> CudaResult<()> {
        if at + src.len() > dst.len() {
            return Err(format!(
                "add into: {} elements at {at} overrun a buffer of {}",
                src.len(),
                dst.len()
            ));
        }
        let n = src.len() as u32;
        let kind = kernel_codes::binary(false);
        let mut range = dst.slice_mut().slice_mut(at..at + src.len());
        // The kernel reads a[i] and then writes y[i] in the same thread, so a and y may be
        // the same memory; a raw pointer passes it twice (safe Rust lends it once).
        let (ptr, _record) = range.device_ptr_mut(&self.stream);
        let mut l = self.stream.launch_builder(&self.functions.binary);
        l.arg(&ptr).arg(src.slice()).arg(&ptr).arg(&n).arg(&kind);
        // SAFETY: matches binary_f32(const float* a, const float* b, float* y, unsigned n,
        // int kind); `ptr` addresses n floats inside dst (checked above), src holds n.
        unsafe { l.launch(launch_1d(src.len())) }.map_err(err("binary_f32 (add into)"))?;
        Ok(())
    }

    /// `factor * x`.
    pub fn launch_scale(
        self: &Arc<Self>,
        x: &DeviceBuffer,
        factor: f32,
    ) -> CudaResult<DeviceBuffer> {
        let mut y = self.alloc(x.len())?;
        let n = x.len() as u32;
        let mut l = self.stream.launch_builder(&self.functions.scale);
        l.arg(x.slice()).arg(y.slice_mut()).arg(&n).arg(&factor);
        // SAFETY: matches scale_f32(const float*, float*, unsigned, float); n floats each.
        unsafe { l.launch(launch_1d(x.len())) }.map_err(err("scale_f32"))?;
        Ok(y)
    }

    /// [`Self::launch_activation`] on host data.
    pub fn activation(self: &Arc<Self>, x: &[f32], act: Activation) -> CudaResult<Vec<f32>> {
        self.launch_activation(&self.upload_buffer(x)?, act)?
            .to_host()
    }

    /// [`Self::launch_activation_backward`] on host data.
    pub fn activation_backward(
        self: &Arc<Self>,
        dy: &[f32],
        x: &[f32],
        y: &[f32],
        act: Activation,
    ) -> CudaResult<Vec<f32>> {
        let up = |v| self.upload_buffer(v);
        self.launch_activation_backward(&up(dy)?, &up(x)?, &up(y)?, act)?
            .to_host()
    }

    /// [`Self::launch_dropout`] on host data.
    pub fn dropout(self: &Arc<Self>, x: &[f32], p: f64, seed: u64) -> CudaResult<Vec<f32>> {
        self.launch_dropout(&self.upload_buffer(x)?, p, seed)?
            .to_host()
    }

    /// [`Self::launch_binary`] on host data.
    pub fn binary(self: &Arc<Self>, a: &[f32], b: &[f32], multiply: bool) -> CudaResult<Vec<f32>> {
        let up = |v| self.upload_buffer(v);
        self.launch_binary(&up(a)?, &up(b)?, multiply)?.to_host()
    }

    /// [`Self::launch_scale`] on host data.
    pub fn scale(self: &Arc<Self>, x: &[f32], factor: f32) -> CudaResult<Vec<f32>> {
        self.launch_scale(&self.upload_buffer(x)?, factor)?
            .to_host()
    }
}
