//! Zero / reflect / replicate padding (`kernels/pad.cu`).

use std::sync::Arc;

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, DeviceBuffer, err, launch_1d};
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
        let (in_len, out_len): (usize, usize) = (
            g.planes * g.input.iter().product::<usize>(),
            g.planes * g.output().iter().product::<usize>(),
        );
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
        let params = PadParams {
            planes: g.planes as i32,
            input: g.input.map(|v| v as i32),
            before: g.pads.map(|p| p[0] as i32),
            after: g.pads.map(|p| p[1] as i32),
            mode: kernel_codes::pad(mode),
        };
        let f = if backward {
            &self.functions.pad_bwd
        } else {
            &self.functions.pad_fwd
        };
        let mut b = self.stream.launch_builder(f);
        b.arg(&params).arg(data.slice()).arg(out.slice_mut());
        // SAFETY: matches pad_fwd_f32 / pad_bwd_f32(PadParams, const float*, float*); the
        // buffers have the input and output sizes of `g` (checked above). Both kernels
        // write every element of their result (the backward gathers per input element).
        unsafe { b.launch(launch_1d(to_len)) }.map_err(err("pad kernel"))?;
        Ok(out)
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
