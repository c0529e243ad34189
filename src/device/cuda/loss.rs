//! The losses (`kernels/loss.cu`): double block sums of the forward, the element-wise backward.

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, err, launch_1d};
use crate::device::kernel_codes;
use crate::ops::loss::LossKind;

impl CudaBackend {
    /// Mean loss of `pred` against `target` (a tensor of the same length, or None for the
    /// constant label), as `ops::loss::cpu::loss`.
    pub fn loss(
        &self,
        kind: LossKind,
        pred: &[f32],
        target: Option<&[f32]>,
        constant: f32,
    ) -> CudaResult<f64> {
        let st = &self.stream;
        let dp = self.upload(pred)?;
        let dt = self.upload(target.unwrap_or(&[0.0]))?;
        let cfg = launch_1d(pred.len());
        let blocks = cfg.grid_dim.0 as usize;
        let mut partial = self.upload(&vec![f64::NAN; blocks])?;
        let (k, has, n) = (
            kernel_codes::loss(kind),
            target.is_some() as i32,
            pred.len() as i64,
        );
        let mut b = st.launch_builder(&self.functions.loss_sums);
        b.arg(&k)
            .arg(&dp)
            .arg(&dt)
            .arg(&has)
            .arg(&constant)
            .arg(&n)
            .arg(&mut partial);
        // SAFETY: matches loss_partial_sums_f32; `partial` holds one double per block.
        unsafe { b.launch(cfg) }.map_err(err("loss_partial_sums_f32"))?;
        let sums = self.download(&partial)?;
        Ok(sums.iter().sum::<f64>() / pred.len().max(1) as f64)
    }

    /// Gradients of `gy * loss`: (dpred, dtarget when the target is a tensor).
    pub fn loss_backward(
        &self,
        kind: LossKind,
        pred: &[f32],
        target: Option<&[f32]>,
        constant: f32,
        gy: f32,
    ) -> CudaResult<(Vec<f32>, Option<Vec<f32>>)> {
        let st = &self.stream;
        let dp = self.upload(pred)?;
        let dt = self.upload(target.unwrap_or(&[0.0]))?;
        let mut grad_p = self.poisoned(pred.len())?;
        let mut grad_t = self.poisoned(if target.is_some() { pred.len() } else { 1 })?;
        let (k, has, n) = (
            kernel_codes::loss(kind),
            target.is_some() as i32,
            pred.len() as i64,
        );
        let scale = gy / pred.len().max(1) as f32;
        let mut b = st.launch_builder(&self.functions.loss_backward);
        b.arg(&k)
            .arg(&dp)
            .arg(&dt)
            .arg(&has)
            .arg(&constant)
            .arg(&n)
            .arg(&scale)
            .arg(&mut grad_p)
            .arg(&mut grad_t);
        // SAFETY: matches loss_backward_f32; dtarget is only written when has_target.
        unsafe { b.launch(launch_1d(pred.len())) }.map_err(err("loss_backward_f32"))?;
        let gp = self.download(&grad_p)?;
        let gt = if target.is_some() {
            Some(self.download(&grad_t)?)
        } else {
            None
        };
        Ok((gp, gt))
    }
}
