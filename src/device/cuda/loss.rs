//! The three losses (`kernels/loss.cu`): mean over all elements of the element loss against
//! a target tensor or a constant, and its gradient.

use std::sync::Arc;

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, DeviceBuffer, NULL, err, launch_1d};
use crate::device::kernel_codes;
use crate::ops::loss::LossKind;

impl CudaBackend {
    /// Mean loss of `pred` against `target`, or against `constant` when there is none.
    pub fn launch_loss(
        self: &Arc<Self>,
        kind: LossKind,
        pred: &DeviceBuffer,
        target: Option<&DeviceBuffer>,
        constant: f32,
    ) -> CudaResult<f64> {
        let config = launch_1d(pred.len());
        let sum = self.sum_of_block_partials(config, |partial| {
            let (k, has, n) = (
                kernel_codes::loss(kind),
                target.is_some() as i32,
                pred.len() as i64,
            );
            // Without a target the kernel reads none: any buffer stands in.
            let t = target.unwrap_or(pred);
            let mut b = self.stream.launch_builder(&self.functions.loss_sums);
            b.arg(&k)
                .arg(pred.slice())
                .arg(t.slice())
                .arg(&has)
                .arg(&constant)
                .arg(&n)
                .arg(partial);
            // SAFETY: matches loss_partial_sums_f32(int, const float*, const float*, int,
            // float, long long, double*); `partial` holds one double per block.
            unsafe { b.launch(config) }.map_err(err("loss_partial_sums_f32"))?;
            Ok(())
        })?;
        Ok(sum / pred.len().max(1) as f64)
    }

    /// Gradients of `gy` times the mean loss: wrt pred, and wrt target when there is one and
    /// `want_target` (a constant target, such as the real image of a cycle loss, needs none).
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn launch_loss_backward(
        self: &Arc<Self>,
        kind: LossKind,
        pred: &DeviceBuffer,
        target: Option<&DeviceBuffer>,
        constant: f32,
        gy: f32,
        want_target: bool,
    ) -> CudaResult<(DeviceBuffer, Option<DeviceBuffer>)> {
        let mut grad_p = self.alloc(pred.len())?;
        let mut grad_t = match target {
            Some(_) if want_target => Some(self.alloc(pred.len())?),
            _ => None,
        };
        let (k, has, n) = (
            kernel_codes::loss(kind),
            target.is_some() as i32,
            pred.len() as i64,
        );
        let scale = gy / pred.len().max(1) as f32;
        let t = target.unwrap_or(pred);
        let mut b = self.stream.launch_builder(&self.functions.loss_backward);
        b.arg(&k)
            .arg(pred.slice())
            .arg(t.slice())
            .arg(&has)
            .arg(&constant)
            .arg(&n)
            .arg(&scale)
            .arg(grad_p.slice_mut());
        match grad_t.as_mut() {
            Some(g) => b.arg(g.slice_mut()),
            None => b.arg(&NULL),
        };
        // SAFETY: matches loss_backward_f32(int, const float* pred, const float* target, int,
        // float, long long, float scale, float* dpred, float* dtarget); dpred holds n floats,
        // dtarget n, or it is null and not written.
        unsafe { b.launch(launch_1d(pred.len())) }.map_err(err("loss_backward_f32"))?;
        Ok((grad_p, grad_t))
    }

    /// [`Self::launch_loss`] on host data.
    pub fn loss(
        self: &Arc<Self>,
        kind: LossKind,
        pred: &[f32],
        target: Option<&[f32]>,
        constant: f32,
    ) -> CudaResult<f64> {
        let t = target.map(|t| self.upload_buffer(t)).transpose()?;
        self.launch_loss(kind, &self.upload_buffer(pred)?, t.as_ref(), constant)
    }

    /// [`Self::launch_loss_backward`] on host data.
    pub fn loss_backward(
        self: &Arc<Self>,
        kind: LossKind,
        pred: &[f32],
        target: Option<&[f32]>,
        constant: f32,
        gy: f32,
    ) -> CudaResult<(Vec<f32>, Option<Vec<f32>>)> {
        let t = target.map(|t| self.upload_buffer(t)).transpose()?;
        let pred = self.upload_buffer(pred)?;
        let (gp, gt) = self.launch_loss_backward(kind, &pred, t.as_ref(), constant, gy, true)?;
        Ok((gp.to_host()?, gt.map(|g| g.to_host()).transpose()?))
    }
}
