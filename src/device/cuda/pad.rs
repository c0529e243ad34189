//! Zero / reflect / replicate padding (`kernels/pad.cu`).

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, err, launch_1d};
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
    pub fn pad(
        &self,
        data: &[f32],
        g: &PadGeometry,
        mode: PadMode,
        backward: bool,
    ) -> CudaResult<Vec<f32>> {
        let st = &self.stream;
        let (in_len, out_len): (usize, usize) = (
            g.planes * g.input.iter().product::<usize>(),
            g.planes * g.output().iter().product::<usize>(),
        );
        let out_size = if backward { in_len } else { out_len };
        let d = self.upload(data)?;
        let mut out = self.poisoned(out_size)?;
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
        let mut b = st.launch_builder(f);
        b.arg(&params).arg(&d).arg(&mut out);
        // SAFETY: matches pad_fwd_f32 / pad_bwd_f32 (PadParams, const float*, float*).
        unsafe { b.launch(launch_1d(out_size)) }.map_err(err("pad kernel"))?;
        self.download(&out)
    }
}
