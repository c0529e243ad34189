//! Sliding-window inference with the volume on the device (`kernels/window.cu`): cutting
//! windows into a batch of patches, adding output patches into f64 weighted sums, and the
//! final division. The f64 arrays are held in f32 buffers of twice the length.

use std::sync::Arc;

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, DeviceBuffer, err, launch_1d};

/// `kernels/window.cu`'s WindowParams; sizes and origins (x, y, z).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct WindowParams {
    volume: [i32; 3],
    origin: [i32; 3],
    patch: [i32; 3],
    slot: i32,
}
const _: () = assert!(std::mem::size_of::<WindowParams>() == 40);
// SAFETY: plain-old-data with the C layout the kernel declares (size checked on both sides).
unsafe impl cudarc::driver::DeviceRepr for WindowParams {}

/// Where a window lies: a box of `patch` at `origin` inside `volume` (x, y, z).
#[derive(Clone, Copy, Debug)]
pub struct WindowBox {
    pub volume: [usize; 3],
    pub origin: [usize; 3],
    pub patch: [usize; 3],
}

impl WindowBox {
    fn patch_len(&self) -> usize {
        self.patch.iter().product()
    }

    /// The kernel's parameters for batch slot `slot`, after checking that the box lies in
    /// the volume (the kernels index without bounds checks).
    fn params(&self, what: &str, slot: usize) -> CudaResult<WindowParams> {
        if (0..3).any(|a| self.origin[a] + self.patch[a] > self.volume[a]) {
            return Err(format!("{what}: window {self:?} leaves the volume"));
        }
        Ok(WindowParams {
            volume: self.volume.map(|v| v as i32),
            origin: self.origin.map(|v| v as i32),
            patch: self.patch.map(|v| v as i32),
            slot: slot as i32,
        })
    }

    fn volume_len(&self) -> usize {
        self.volume.iter().product()
    }
}

/// Checks that `buffer` holds at least `len` elements.
fn holds(what: &str, buffer: &DeviceBuffer, len: usize) -> CudaResult<()> {
    if buffer.len() < len {
        return Err(format!(
            "{what}: the buffer holds {} elements, {len} needed",
            buffer.len()
        ));
    }
    Ok(())
}

impl CudaBackend {
    /// Copies window `w` of `volume` into patch `slot` of `patches`.
    pub fn launch_window_cut(
        &self,
        volume: &DeviceBuffer,
        w: &WindowBox,
        patches: &mut DeviceBuffer,
        slot: usize,
    ) -> CudaResult<()> {
        let params = w.params("window_cut", slot)?;
        holds("window_cut volume", volume, w.volume_len())?;
        holds("window_cut patches", patches, (slot + 1) * w.patch_len())?;
        let mut b = self.stream.launch_builder(&self.functions.window_cut);
        b.arg(&params).arg(volume.slice()).arg(patches.slice_mut());
        // SAFETY: matches window_cut_f32(WindowParams, const float*, float*); the window lies
        // in the volume and the patch slot in the batch (checked above).
        unsafe { b.launch(launch_1d(w.patch_len())) }.map_err(err("window_cut_f32"))?;
        Ok(())
    }

    /// Adds patch `slot` of `patches`, weighted by `weights` (f64, one per patch element),
    /// into the f64 sums `sum` and `weight_sum` over window `w`.
    pub fn launch_window_add(
        &self,
        patches: &DeviceBuffer,
        slot: usize,
        weights: &DeviceBuffer,
        w: &WindowBox,
        sums: (&mut DeviceBuffer, &mut DeviceBuffer),
    ) -> CudaResult<()> {
        let params = w.params("window_add", slot)?;
        holds("window_add patches", patches, (slot + 1) * w.patch_len())?;
        holds("window_add weights", weights, 2 * w.patch_len())?;
        holds("window_add sum", sums.0, 2 * w.volume_len())?;
        holds("window_add weight sum", sums.1, 2 * w.volume_len())?;
        let mut b = self.stream.launch_builder(&self.functions.window_add);
        b.arg(&params)
            .arg(patches.slice())
            .arg(weights.slice())
            .arg(sums.0.slice_mut())
            .arg(sums.1.slice_mut());
        // SAFETY: matches window_add_f64(WindowParams, const float*, const double*, double*,
        // double*); the f64 buffers hold two floats per double (checked above) and are whole
        // pool allocations, so aligned for doubles.
        unsafe { b.launch(launch_1d(w.patch_len())) }.map_err(err("window_add_f64"))?;
        Ok(())
    }

    /// `sum / weight_sum` as f32 over the box `w` (the volume's own extent inside the padded
    /// one the sums cover).
    pub fn launch_window_blend(
        self: &Arc<Self>,
        sum: &DeviceBuffer,
        weight_sum: &DeviceBuffer,
        w: &WindowBox,
    ) -> CudaResult<DeviceBuffer> {
        let params = w.params("window_blend", 0)?;
        holds("window_blend sum", sum, 2 * w.volume_len())?;
        holds("window_blend weight sum", weight_sum, 2 * w.volume_len())?;
        let mut out = self.alloc(w.patch_len())?;
        let mut b = self.stream.launch_builder(&self.functions.window_blend);
        b.arg(&params)
            .arg(sum.slice())
            .arg(weight_sum.slice())
            .arg(out.slice_mut());
        // SAFETY: matches window_blend_f32(WindowParams, const double*, const double*,
        // float*); `out` holds the box, the sums the volume (checked above).
        unsafe { b.launch(launch_1d(w.patch_len())) }.map_err(err("window_blend_f32"))?;
        Ok(out)
    }
}
