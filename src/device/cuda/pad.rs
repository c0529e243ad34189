//! Zero / reflect / replicate padding (`kernels/pad.cu`).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{CudaBackend, CudaResult, DeviceBuffer, err, launch_planes};
use crate::device::kernel_codes;
use crate::ops::pad::PadMode;
use crate::ops::pad::cpu::PadGeometry;

/// `kernels/pad.cu`'s PadParams.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct PadParams {
    planes: i32,
    input: [i32; 3],
    before: [i32; 3],
    after: [i32; 3],
    mode: i32,
}
const _: () = assert!(std::mem::size_of::<PadParams>() == 44);
// SAFETY: plain-old-data with the C layout the kernel declares (size checked on both sides).
unsafe impl cudarc::driver::DeviceRepr for PadParams {}

impl PadParams {
    fn of(g: &PadGeometry, mode: PadMode) -> PadParams {
        PadParams {
            planes: g.planes as i32,
            input: g.input.map(|v| v as i32),
            before: g.pads.map(|p| p[0] as i32),
            after: g.pads.map(|p| p[1] as i32),
            mode: kernel_codes::pad(mode),
        }
    }
}

impl CudaBackend {
    /// Padding forward (`backward` false: `data` is the input) or backward (`data` is the
    /// output gradient), as `ops::pad::cpu::pad_forward` / `pad_backward`.
    pub fn launch_pad(
        self: &Arc<Self>,
        data: &DeviceBuffer,
        g: &PadGeometry,
        mode: PadMode,
        backward: bool,
    ) -> CudaResult<DeviceBuffer> {
        let (in_plane, out_plane) = g.plane_lens();
        let (in_len, out_len) = (g.planes * in_plane, g.planes * out_plane);
        let (from_len, to_len) = if backward {
            (out_len, in_len)
        } else {
            (in_len, out_len)
        };
        if data.len() != from_len {
            return Err(format!(
                "pad: {} elements given, the geometry needs {from_len}",
                data.len()
            ));
        }
        let mut out = self.alloc(to_len)?;
        self.enqueue_pad(g, mode, backward, data.slice(), out.slice_mut())?;
        Ok(out)
    }

    /// [`Self::launch_pad`] from `from` into `to`, which hold at least the geometry's input and
    /// output elements (forward; backward the other way round).
    pub(super) fn enqueue_pad(
        &self,
        g: &PadGeometry,
        mode: PadMode,
        backward: bool,
        from: &CudaSlice<f32>,
        to: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let (in_plane, out_plane) = g.plane_lens();
        let (f, to_plane) = if backward {
            (&self.functions.pad_bwd, in_plane)
        } else {
            (&self.functions.pad_fwd, out_plane)
        };
        let params = PadParams::of(g, mode);
        let mut b = self.stream.launch_builder(f);
        b.arg(&params).arg(from).arg(to);
        // SAFETY: matches pad_fwd_f32 / pad_bwd_f32(PadParams, const float*, float*); the
        // buffers hold the input and output sizes of `g` (the callers' contract). Both
        // kernels write every element of their result (the backward gathers per input
        // element).
        unsafe { b.launch(launch_planes(g.planes, to_plane)) }.map_err(err("pad kernel"))?;
        Ok(())
    }

    /// [`Self::launch_pad`] on host data.
    pub fn pad(
        self: &Arc<Self>,
        data: &[f32],
        g: &PadGeometry,
        mode: PadMode,
        backward: bool,
    ) -> CudaResult<Vec<f32>> {
        self.launch_pad(&self.upload_buffer(data)?, g, mode, backward)?
            .to_host()
    }
}
