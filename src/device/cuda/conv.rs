//! Conv primitives and the dense GEMM (`kernels/conv.cu`): direct and tiled implicit-GEMM
//! launches as `crate::device::tiled_conv` plans them, thin convs (`crate::device::thin_conv`),
//! Winograd's transforms (`crate::device::winograd`), scratch from the backend's pool, and
//! their timing.
//!
//! Convs that pad with reflection or replication run that padding in the kernels where they
//! can (fprop's gather; dgrad after folding dY, `dgrad_folds_padding`) and otherwise pad
//! explicitly around the same conv without padding: wgrad (its row runs of x would break at
//! the reflected ends), the thin convs, and dgrads the folding does not cover.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cudarc::driver::{CudaFunction, CudaSlice, CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

use super::{
    CudaBackend, CudaResult, DeviceBuffer, StreamAllocator, err, launch_1d, launch_planes,
};
use crate::device::conv_params::ConvParams;
use crate::device::pool::Pooled;
use crate::device::thin_conv::{ThinConv, wgrad_dual};
use crate::device::tiled_conv::{
    ConvPass, TileShape, TiledLaunch, dense_gemm_tile, dgrad_folds_padding, folded_dy_len,
};
use crate::device::winograd::{self, Winograd};
use crate::ops::conv::ConvGeometry;
use crate::ops::pad::PadMode;
use crate::ops::pad::cpu::PadGeometry;

// SAFETY: plain-old-data with the C layout the kernel declares (size checked on both sides).
unsafe impl cudarc::driver::DeviceRepr for ConvParams {}

/// A conv launch worked out once (`CudaBackend::prepare_conv`): the kernel, its parameters
/// and function, the tiled kernels' plan, the result's length, and the length of dY folded
/// for a dgrad that pads with reflection or replication (0: none).
struct PreparedConv<'a> {
    kernel: ConvKernel,
    params: ConvParams,
    function: &'a CudaFunction,
    plan: Option<TiledLaunch>,
    out_len: usize,
    folded_len: usize,
}

impl PreparedConv<'_> {
    /// Floats of split-K partial sums the launch needs (0 without a split).
    fn workspace_len(&self) -> usize {
        self.plan.map_or(0, |p| p.workspace)
    }
}

/// The conv kernels of `kernels/conv.cu`: each primitive direct (one thread per result, the
/// correctness baseline) and as a tiled implicit GEMM (shape and K split per
/// `TiledLaunch::plan`); fprop to one channel and dgrad to one channel also thin (a dense
/// GEMM and a gather, `ThinConv`), which the tiled kernels hand over to where it fills the
/// GPU; wgrad to one channel also thin (its dual conv's tiled wgrad, `wgrad_dual`), which
/// the tiled kernel hands over to wherever it applies; each primitive of a 2D 3 x 3 conv at
/// stride 1 also by Winograd's transform (`Winograd`), timed by `bench kernels` next to the
/// tiled ones and picked by autotuning where faster, but not yet by the static plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// Forward: operands x, w.
    Fprop,
    FpropTiled,
    FpropThin,
    FpropWinograd,
    /// Gradient wrt the input (also a transposed conv's forward): operands dy, w.
    Dgrad,
    DgradTiled,
    DgradThin,
    DgradWinograd,
    /// Gradient wrt the weight: operands x, dy.
    Wgrad,
    WgradTiled,
    WgradThin,
    WgradWinograd,
}

impl ConvKernel {
    pub const ALL: [ConvKernel; 12] = [
        ConvKernel::Fprop,
        ConvKernel::FpropTiled,
        ConvKernel::FpropThin,
        ConvKernel::FpropWinograd,
        ConvKernel::Dgrad,
        ConvKernel::DgradTiled,
        ConvKernel::DgradThin,
        ConvKernel::DgradWinograd,
        ConvKernel::Wgrad,
        ConvKernel::WgradTiled,
        ConvKernel::WgradThin,
        ConvKernel::WgradWinograd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConvKernel::Fprop => "fprop",
            ConvKernel::FpropTiled => "fprop-tiled",
            ConvKernel::FpropThin => "fprop-thin",
            ConvKernel::FpropWinograd => "fprop-winograd",
            ConvKernel::Dgrad => "dgrad",
            ConvKernel::DgradTiled => "dgrad-tiled",
            ConvKernel::DgradThin => "dgrad-thin",
            ConvKernel::DgradWinograd => "dgrad-winograd",
            ConvKernel::Wgrad => "wgrad",
            ConvKernel::WgradTiled => "wgrad-tiled",
            ConvKernel::WgradThin => "wgrad-thin",
            ConvKernel::WgradWinograd => "wgrad-winograd",
        }
    }

    /// The primitive this kernel computes.
    pub fn pass(self) -> ConvPass {
        match self {
            ConvKernel::Fprop
            | ConvKernel::FpropTiled
            | ConvKernel::FpropThin
            | ConvKernel::FpropWinograd => ConvPass::Fprop,
            ConvKernel::Dgrad
            | ConvKernel::DgradTiled
            | ConvKernel::DgradThin
            | ConvKernel::DgradWinograd => ConvPass::Dgrad,
            ConvKernel::Wgrad
            | ConvKernel::WgradTiled
            | ConvKernel::WgradThin
            | ConvKernel::WgradWinograd => ConvPass::Wgrad,
        }
    }

    pub fn thin(self) -> bool {
        matches!(
            self,
            ConvKernel::FpropThin | ConvKernel::DgradThin | ConvKernel::WgradThin
        )
    }

    /// Whether this kernel computes its primitive on `g`: the thin ones need one channel on
    /// the thin side (`ThinConv::plan`, `wgrad_dual`), Winograd's a 2D 3 x 3 conv at
    /// stride 1 (`Winograd::plan`), each on the conv inside any explicit padding; the
    /// others take any conv.
    pub fn applies(self, g: &ConvGeometry) -> bool {
        let unpadded = g.explicit_padding().map_or(*g, |(_, unpadded)| unpadded);
        match self {
            ConvKernel::WgradThin => wgrad_dual(&unpadded).is_some(),
            _ if self.winograd() => Winograd::plan(self.pass(), &unpadded, 1).is_some(),
            _ if self.thin() => ThinConv::plan(self.pass(), &unpadded, 1).is_some(),
            _ => true,
        }
    }

    /// The Winograd kernel of a primitive.
    pub fn winograd_for(pass: ConvPass) -> ConvKernel {
        match pass {
            ConvPass::Fprop => ConvKernel::FpropWinograd,
            ConvPass::Dgrad => ConvKernel::DgradWinograd,
            ConvPass::Wgrad => ConvKernel::WgradWinograd,
        }
    }

    pub fn winograd(self) -> bool {
        matches!(
            self,
            ConvKernel::FpropWinograd | ConvKernel::DgradWinograd | ConvKernel::WgradWinograd
        )
    }

    pub fn tiled(self) -> bool {
        matches!(
            self,
            ConvKernel::FpropTiled | ConvKernel::DgradTiled | ConvKernel::WgradTiled
        )
    }

    /// Element counts of the two operands and the result: fprop (x, w) -> y,
    /// dgrad (dy, w) -> dx, wgrad (x, dy) -> dw.
    fn operand_lens(self, g: &ConvGeometry) -> (usize, usize, usize) {
        let (x, w, y) = (
            g.input_shape().numel(),
            g.weight_shape().numel(),
            g.output_shape().numel(),
        );
        match self.pass() {
            ConvPass::Fprop => (x, w, y),
            ConvPass::Dgrad => (y, w, x),
            ConvPass::Wgrad => (x, y, w),
        }
    }
}

/// What autotuning picked for a tiled kernel on a geometry: one of its launches, or for a
/// 2D 3 x 3 conv at stride 1, the primitive's Winograd kernel (`ConvKernel::winograd_for`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunedConv {
    Tiled(TiledLaunch),
    Winograd,
}

impl TunedConv {
    /// The launch's label (`TiledLaunch::label`), or "winograd".
    pub fn label(&self) -> String {
        match self {
            TunedConv::Tiled(launch) => launch.label(),
            TunedConv::Winograd => "winograd".into(),
        }
    }
}

/// A cache of launches. Every update is whole before the guard drops, so a lock poisoned by
/// a panic elsewhere is still consistent.
fn locked<T>(launches: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    launches.lock().unwrap_or_else(|e| e.into_inner())
}

/// The error for a Winograd kernel asked of a conv it does not apply to (or a kernel that
/// is none).
fn not_winograd(kernel: ConvKernel) -> String {
    format!(
        "conv {}: Winograd's transform needs a 2D 3 x 3 conv at stride 1 with padding up to 2",
        kernel.name()
    )
}

/// The operands' lengths must be what the geometry implies.
fn check_operands(kernel: ConvKernel, g: &ConvGeometry, a: usize, b: usize) -> CudaResult<()> {
    let (a_len, b_len, _) = kernel.operand_lens(g);
    if (a, b) != (a_len, b_len) {
        return Err(format!(
            "conv {}: operands of {a} and {b} elements, the geometry needs {a_len} and {b_len}",
            kernel.name()
        ));
    }
    Ok(())
}

impl CudaBackend {
    /// The kernel behind a conv primitive: the direct one without a tiled `launch`, else the
    /// tiled one its launch names (tile shape, stream K). Thin convs launch theirs themselves
    /// (`enqueue_thin`, `wgrad_thin_plan`).
    fn conv_function(&self, pass: ConvPass, launch: Option<TiledLaunch>) -> &CudaFunction {
        let f = &self.functions;
        let Some(launch) = launch else {
            return match pass {
                ConvPass::Fprop => &f.conv_fprop,
                ConvPass::Dgrad => &f.conv_dgrad,
                ConvPass::Wgrad => &f.conv_wgrad,
            };
        };
        match (pass, launch.stream_k, launch.shape) {
            (ConvPass::Fprop, true, _) => &f.conv_fprop_large_streamk,
            (ConvPass::Dgrad, true, _) => &f.conv_dgrad_large_streamk,
            (ConvPass::Wgrad, true, _) => &f.conv_wgrad_large_streamk,
            (ConvPass::Fprop, false, TileShape::Square) => &f.conv_fprop_tiled,
            (ConvPass::Dgrad, false, TileShape::Square) => &f.conv_dgrad_tiled,
            (ConvPass::Wgrad, false, TileShape::Square) => &f.conv_wgrad_tiled,
            (ConvPass::Fprop, false, TileShape::Large) => &f.conv_fprop_large,
            (ConvPass::Dgrad, false, TileShape::Large) => &f.conv_dgrad_large,
            (ConvPass::Wgrad, false, TileShape::Large) => &f.conv_wgrad_large,
            (ConvPass::Fprop, false, TileShape::Narrow) => &f.conv_fprop_narrow,
            (ConvPass::Dgrad, false, TileShape::Narrow) => &f.conv_dgrad_narrow,
            (ConvPass::Wgrad, false, TileShape::Narrow) => &f.conv_wgrad_narrow,
        }
    }

    /// One conv primitive on device buffers, as its CPU op (`ConvKernel::operand_lens` says
    /// which): `a`, `b` in, the result out. Tiled kernels run as planned, or autotuned
    /// (`set_autotune`); split-K partial sums and padded copies live in pooled buffers for the
    /// launch.
    pub fn launch_conv(
        self: &Arc<Self>,
        kernel: ConvKernel,
        g: &ConvGeometry,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
    ) -> CudaResult<DeviceBuffer> {
        check_operands(kernel, g, a.len(), b.len())?;
        let mut out = self.alloc(kernel.operand_lens(g).2)?;
        self.enqueue_primitive(kernel, g, None, a.slice(), b.slice(), out.slice_mut())?;
        Ok(out)
    }

    /// How `launch_conv` runs `kernel` on `g` if it runs it thin: always for the thin
    /// kernels (on thin convs), for fprop's and dgrad's tiled ones where the thin GEMMs fill
    /// this GPU (`ThinConv::plan`), whatever autotuning would pick.
    pub fn thin_plan(&self, kernel: ConvKernel, g: &ConvGeometry) -> Option<ThinConv> {
        match kernel {
            ConvKernel::FpropTiled | ConvKernel::DgradTiled => {
                ThinConv::plan(kernel.pass(), g, self.multiprocessors)
            }
            ConvKernel::FpropThin | ConvKernel::DgradThin => ThinConv::plan(kernel.pass(), g, 1),
            _ => None,
        }
    }

    /// The dual conv `launch_conv` runs `kernel` on `g` as, if it runs it thin: always for
    /// `WgradThin`, for `WgradTiled` wherever there is one (`wgrad_dual`: its GEMM has
    /// `c_in` rows where `g`'s has one), whatever autotuning would pick.
    pub fn wgrad_thin_plan(&self, kernel: ConvKernel, g: &ConvGeometry) -> Option<ConvGeometry> {
        matches!(kernel, ConvKernel::WgradTiled | ConvKernel::WgradThin)
            .then(|| wgrad_dual(g))
            .flatten()
    }

    /// Whether `launch_conv` runs `kernel` on `g` thin (`thin_plan`, `wgrad_thin_plan`).
    pub fn runs_thin(&self, kernel: ConvKernel, g: &ConvGeometry) -> bool {
        self.thin_plan(kernel, g).is_some() || self.wgrad_thin_plan(kernel, g).is_some()
    }

    /// For a conv that pads with reflection or replication and whose kernel does not take
    /// that padding itself (module doc; `may_thin`: the kernel may run thin): the padding,
    /// and the conv without it that runs inside.
    fn padding_outside_kernel(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        may_thin: bool,
    ) -> Option<(PadGeometry, ConvGeometry)> {
        let (padding, unpadded) = g.explicit_padding()?;
        let thin = may_thin && self.runs_thin(kernel, &unpadded);
        let in_kernel = !kernel.winograd()
            && match kernel.pass() {
                ConvPass::Fprop => !thin,
                ConvPass::Dgrad => !thin && dgrad_folds_padding(g),
                ConvPass::Wgrad => false,
            };
        (!in_kernel).then_some((padding, unpadded))
    }

    /// `kernel` on `g` from `a`, `b` into `out` (at least the result's length), padding
    /// included: a tiled kernel launched as `launch`, or (None) thin where `thin_plan` says
    /// and otherwise as planned or autotuned.
    fn enqueue_primitive(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        launch: Option<TiledLaunch>,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let launch = launch.filter(|_| kernel.tiled());
        if let Some((padding, unpadded)) = self.padding_outside_kernel(kernel, g, launch.is_none())
        {
            let mut padded = self.pool.take(unpadded.input_shape().numel())?;
            let mode = g.pad_mode;
            return if kernel.pass() == ConvPass::Dgrad {
                self.enqueue_primitive(kernel, &unpadded, launch, a, b, &mut padded)?;
                self.enqueue_pad(&padding, mode, true, &padded, out)
            } else {
                self.enqueue_pad(&padding, mode, false, a, &mut padded)?;
                self.enqueue_primitive(kernel, &unpadded, launch, &padded, b, out)
            };
        }
        if launch.is_none()
            && let Some(thin) = self.thin_plan(kernel, g)
        {
            return self.enqueue_thin(&thin, g, &ConvParams::of(g)?, a, b, out);
        }
        if launch.is_none()
            && let Some(dual) = self.wgrad_thin_plan(kernel, g)
        {
            // The dual's wgrad takes dy as its input and x as its output gradient.
            let mut dual_dw = self.pool.take(g.weight_shape().numel())?;
            self.enqueue_primitive(ConvKernel::WgradTiled, &dual, None, b, a, &mut dual_dw)?;
            return self.reverse_taps(&dual_dw, g, out);
        }
        if kernel.winograd() {
            let plan = Winograd::plan(kernel.pass(), g, self.multiprocessors)
                .ok_or_else(|| not_winograd(kernel))?;
            return self.enqueue_winograd(&plan, a, b, out);
        }
        if kernel.thin() {
            return Err(format!(
                "conv {}: not a thin conv (one channel on the result's side, several taps, zero padding)",
                kernel.name()
            ));
        }
        let plan = match launch {
            Some(launch) => Some(launch),
            None if kernel.tiled() && self.autotune.load(Ordering::Relaxed) => {
                match self.tuned_conv(kernel, g, a, b)? {
                    TunedConv::Tiled(launch) => Some(launch),
                    TunedConv::Winograd => {
                        let winograd = ConvKernel::winograd_for(kernel.pass());
                        return self.enqueue_primitive(winograd, g, None, a, b, out);
                    }
                }
            }
            None => self.planned_launch(kernel, g),
        };
        let conv = self.prepare_conv(kernel, g, plan)?;
        let mut workspace = self.pool.take(conv.workspace_len())?;
        self.enqueue_conv(&conv, a, b, out, &mut workspace)
    }

    /// From now on (`on`), each tiled conv primitive picks its launch by timing: the first
    /// time a kernel meets a geometry, every `TiledLaunch::candidates` launch (and Winograd's
    /// transform, where it applies) runs on the real operands (median of 3 after a warm-up)
    /// and the fastest is kept for the process, as PyTorch's `cudnn.benchmark`.
    /// The first step pays for the timing, and results may differ in the last bits from the
    /// planned launch's (another K split sums in another order). Off by default.
    pub fn set_autotune(&self, on: bool) {
        self.autotune.store(on, Ordering::Relaxed);
    }

    /// What autotuning has picked so far, per primitive: how many conv shapes took a tiled
    /// launch and how many Winograd's transform, e.g. "wgrad: 3 tiled, 2 winograd"; the
    /// primitives autotuning has not met are left out.
    pub fn tuned_summary(&self) -> Vec<String> {
        let tuned = self.tuned_launches();
        [ConvPass::Fprop, ConvPass::Dgrad, ConvPass::Wgrad]
            .into_iter()
            .filter_map(|pass| {
                let picks: Vec<&TunedConv> = tuned
                    .iter()
                    .filter(|(k, ..)| k.pass() == pass)
                    .map(|(.., t)| t)
                    .collect();
                let winograd = picks.iter().filter(|t| **t == &TunedConv::Winograd).count();
                (!picks.is_empty()).then(|| {
                    format!(
                        "{}: {} tiled, {winograd} winograd",
                        pass.name(),
                        picks.len() - winograd
                    )
                })
            })
            .collect()
    }

    /// What autotuning has picked so far, as (kernel, geometry, pick).
    pub fn tuned_launches(&self) -> Vec<(ConvKernel, ConvGeometry, TunedConv)> {
        let tuned = locked(&self.tuned);
        tuned.iter().map(|(&(k, g), &t)| (k, g, t)).collect()
    }

    /// The fastest way to run `kernel` on `g`, timed on the operands `a`, `b` the first time
    /// and remembered after: its candidate launches, and Winograd's transform where it
    /// applies.
    fn tuned_conv(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
    ) -> CudaResult<TunedConv> {
        const REPS: usize = 3;
        if let Some(&tuned) = locked(&self.tuned).get(&(kernel, *g)) {
            return Ok(tuned);
        }
        let mut out = self.pool.take(kernel.operand_lens(g).2)?;
        let mut best = (f64::INFINITY, None);
        for launch in self.autotune_candidates(kernel, g) {
            let conv = self.prepare_conv(kernel, g, Some(launch))?;
            let mut workspace = self.pool.take(conv.workspace_len())?;
            let ms = self.time_ms(REPS, || {
                self.enqueue_conv(&conv, a, b, &mut out, &mut workspace)
            })?;
            if ms < best.0 {
                best = (ms, Some(TunedConv::Tiled(launch)));
            }
        }
        let winograd = ConvKernel::winograd_for(kernel.pass());
        if winograd.applies(g) {
            // Padding included, as it runs (explicitly around the transforms).
            let ms = self.time_ms(REPS, || {
                self.enqueue_primitive(winograd, g, None, a, b, &mut out)
            })?;
            if ms < best.0 {
                best = (ms, Some(TunedConv::Winograd));
            }
        }
        let tuned = best.1.expect("the plan is always a candidate");
        locked(&self.tuned).insert((kernel, *g), tuned);
        Ok(tuned)
    }

    /// The launches autotuning times for `kernel` on `g` (`TiledLaunch::candidates`).
    pub fn autotune_candidates(&self, kernel: ConvKernel, g: &ConvGeometry) -> Vec<TiledLaunch> {
        TiledLaunch::candidates(kernel.pass().gemm(g), self.multiprocessors)
    }

    /// A conv primitive on host data: a tiled kernel launched as `launch`, or (None) as
    /// [`Self::launch_conv`] launches it.
    pub fn conv(
        self: &Arc<Self>,
        kernel: ConvKernel,
        g: &ConvGeometry,
        launch: Option<TiledLaunch>,
        a: &[f32],
        b: &[f32],
    ) -> CudaResult<Vec<f32>> {
        check_operands(kernel, g, a.len(), b.len())?;
        let (a, b) = (self.upload_buffer(a)?, self.upload_buffer(b)?);
        let mut out = self.alloc(kernel.operand_lens(g).2)?;
        self.enqueue_primitive(kernel, g, launch, a.slice(), b.slice(), out.slice_mut())?;
        out.to_host()
    }

    /// A thin conv (`ConvKernel::FpropThin` or `DgradThin`) on host data, its Z in slabs of
    /// at most `budget` floats (`ThinConv::with_budget`).
    pub fn thin_conv(
        self: &Arc<Self>,
        kernel: ConvKernel,
        g: &ConvGeometry,
        budget: usize,
        a: &[f32],
        b: &[f32],
    ) -> CudaResult<Vec<f32>> {
        let thin = ThinConv::with_budget(kernel.pass(), g, 1, budget)
            .filter(|_| kernel.thin())
            .ok_or_else(|| format!("conv {}: not a thin conv", kernel.name()))?;
        check_operands(kernel, g, a.len(), b.len())?;
        let (a, b) = (self.upload_buffer(a)?, self.upload_buffer(b)?);
        let mut out = self.alloc(kernel.operand_lens(g).2)?;
        self.enqueue_thin(
            &thin,
            g,
            &ConvParams::of(g)?,
            a.slice(),
            b.slice(),
            out.slice_mut(),
        )?;
        out.to_host()
    }

    /// A Winograd kernel (`ConvKernel::winograd`) on `g` (a 2D 3 x 3 conv at stride 1,
    /// zero-padded) on host data, planned for a GPU of `multiprocessors` (more than this
    /// one's splits wgrad's K on small shapes: the parity tests).
    pub fn winograd(
        self: &Arc<Self>,
        kernel: ConvKernel,
        g: &ConvGeometry,
        multiprocessors: usize,
        a: &[f32],
        b: &[f32],
    ) -> CudaResult<Vec<f32>> {
        let plan = Winograd::plan(kernel.pass(), g, multiprocessors)
            .filter(|_| kernel.winograd())
            .ok_or_else(|| not_winograd(kernel))?;
        check_operands(kernel, g, a.len(), b.len())?;
        let (a, b) = (self.upload_buffer(a)?, self.upload_buffer(b)?);
        let mut out = self.alloc(kernel.operand_lens(g).2)?;
        self.enqueue_winograd(&plan, a.slice(), b.slice(), out.slice_mut())?;
        out.to_host()
    }

    /// How a tiled kernel is launched on `g`: in tiles of `shape`, or (None) as
    /// `TiledLaunch::plan` picks for this GPU.
    pub fn tiled_launch(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        shape: Option<TileShape>,
    ) -> TiledLaunch {
        let gemm = kernel.pass().gemm(g);
        match shape {
            Some(shape) => TiledLaunch::with_shape(gemm, shape, self.multiprocessors),
            None => TiledLaunch::plan(gemm, self.multiprocessors),
        }
    }

    /// A tiled kernel's launch as planned, worked out once per geometry; None for the direct
    /// kernels.
    fn planned_launch(&self, kernel: ConvKernel, g: &ConvGeometry) -> Option<TiledLaunch> {
        kernel.tiled().then(|| {
            *locked(&self.planned)
                .entry((kernel, *g))
                .or_insert_with(|| self.tiled_launch(kernel, g, None))
        })
    }

    /// Everything a launch of `kernel` on `g` needs that does not change between launches,
    /// worked out once (the timing loop launches the same conv many times); `plan` is the
    /// tiled kernels' launch.
    fn prepare_conv(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        plan: Option<TiledLaunch>,
    ) -> CudaResult<PreparedConv<'_>> {
        let folds = kernel.pass() == ConvPass::Dgrad && g.pad_mode != PadMode::Zero;
        Ok(PreparedConv {
            kernel,
            params: ConvParams::of(g)?,
            function: self.conv_function(kernel.pass(), plan),
            plan,
            out_len: kernel.operand_lens(g).2,
            folded_len: if folds { folded_dy_len(g) } else { 0 },
        })
    }

    /// Launches a prepared conv on device buffers of the sizes its geometry implies. fprop
    /// and dgrad first rewrite the weights `b` as their A operand's K-major panel (a pooled
    /// buffer of w's size, `conv_weight_panel_f32`), and a dgrad that pads with reflection or
    /// replication folds dY `a` (`conv_fold_dy_f32`, into a pooled buffer); tiled kernels
    /// with split K add their partial sums (in `workspace`, at least `workspace_len()`
    /// floats, from the backend's pool) after.
    fn enqueue_conv(
        &self,
        conv: &PreparedConv,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        workspace: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let st = &self.stream;
        let name = conv.kernel.name();
        let panel = match conv.kernel.pass() {
            ConvPass::Wgrad => None,
            pass => Some(self.weight_panel(&conv.params, pass, b)?),
        };
        let folded = match conv.folded_len {
            0 => None,
            len => Some(self.fold_dy(&conv.params, a, len)?),
        };
        let a = folded.as_deref().unwrap_or(a);
        let mut launch = st.launch_builder(conv.function);
        launch
            .arg(&conv.params)
            .arg(a)
            .arg(panel.as_deref().unwrap_or(b))
            .arg(&mut *out);
        let Some(plan) = conv.plan else {
            // SAFETY: matches the direct kernels' (ConvParams, const float*, const float*,
            // float*); the buffers have the sizes the geometry implies.
            unsafe { launch.launch(launch_1d(conv.out_len)) }.map_err(err(name))?;
            return Ok(());
        };
        launch.arg(&mut *workspace).arg(&plan.k_chunk);
        let config = LaunchConfig {
            grid_dim: plan.grid,
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches the tiled kernels' (ConvParams, const float*, const float*, float*,
        // float* partial, int k_chunk); with several splits `workspace` holds
        // `plan.workspace` floats, else the kernels do not touch it.
        unsafe { launch.launch(config) }.map_err(err(name))?;
        if plan.splits > 1 {
            let (len_arg, splits) = (conv.out_len as i32, plan.splits as i32);
            let mut sum = st.launch_builder(&self.functions.conv_split_sum);
            sum.arg(&*workspace)
                .arg(&mut *out)
                .arg(&len_arg)
                .arg(&splits);
            // SAFETY: matches (const float* partial, float* out, int len, int splits);
            // `workspace` holds splits * len floats, `out` len.
            unsafe { sum.launch(launch_1d(conv.out_len)) }.map_err(err("conv split sum"))?;
        }
        Ok(())
    }

    /// The weights `w` as fprop's or dgrad's A operand, K-major (`conv_weight_panel_f32`), in
    /// a buffer from the pool.
    fn weight_panel(
        &self,
        params: &ConvParams,
        pass: ConvPass,
        w: &CudaSlice<f32>,
    ) -> CudaResult<Pooled<StreamAllocator>> {
        let mut panel = self.pool.take(w.len())?;
        let dgrad = i32::from(pass == ConvPass::Dgrad);
        let mut launch = self
            .stream
            .launch_builder(&self.functions.conv_weight_panel);
        launch.arg(params).arg(w).arg(&mut *panel).arg(&dgrad);
        // SAFETY: matches conv_weight_panel_f32(ConvParams, const float* w, float* panel,
        // int dgrad); `panel` holds as many floats as `w`, the conv's weight.
        unsafe { launch.launch(launch_1d(w.len())) }.map_err(err("conv weight panel"))?;
        Ok(panel)
    }

    /// `g`'s weight gradient `out` from its dual conv's, `dual_dw` (`wgrad_dual`): each input
    /// channel's taps reversed (`conv_reverse_taps_f32`).
    fn reverse_taps(
        &self,
        dual_dw: &CudaSlice<f32>,
        g: &ConvGeometry,
        out: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let kvol = g.kernel.iter().product::<usize>();
        let (rows, kvol_arg) = ((g.weight_shape().numel() / kvol) as i32, kvol as i32);
        let mut launch = self
            .stream
            .launch_builder(&self.functions.conv_reverse_taps);
        launch.arg(dual_dw).arg(out).arg(&rows).arg(&kvol_arg);
        // SAFETY: matches conv_reverse_taps_f32(const float* w, float* out, int rows, int
        // kvol); both hold g's weight, rows * kvol floats.
        unsafe { launch.launch(launch_1d(g.weight_shape().numel())) }
            .map_err(err("conv reverse taps"))?;
        Ok(())
    }

    /// dY `dy` folded for dgrad (`conv_fold_dy_f32`): `len` floats in a pooled buffer.
    fn fold_dy(
        &self,
        params: &ConvParams,
        dy: &CudaSlice<f32>,
        len: usize,
    ) -> CudaResult<Pooled<StreamAllocator>> {
        let mut folded = self.pool.take(len)?;
        let mut launch = self.stream.launch_builder(&self.functions.conv_fold_dy);
        launch.arg(params).arg(dy).arg(&mut *folded);
        // SAFETY: matches conv_fold_dy_f32(ConvParams, const float* dy, float* folded); dy
        // holds the conv's output, `folded` its `folded_dy_len`.
        let planes = (params.n * params.c_out) as usize;
        unsafe { launch.launch(launch_planes(planes, len / planes.max(1))) }
            .map_err(err("conv fold dy"))?;
        Ok(folded)
    }

    /// Median milliseconds of each conv primitive in `variants` (a kernel, and for tiled ones
    /// its launch, e.g. `tiled_launch`'s) on `g`, all on one set of device buffers (x,
    /// w, y filled with values in [-0.5, 0.5), plus one output buffer), so that a batch-16
    /// layer is filled once rather than once per variant.
    pub fn time_conv(
        &self,
        g: &ConvGeometry,
        variants: &[(ConvKernel, Option<TiledLaunch>)],
        reps: usize,
    ) -> CudaResult<Vec<f64>> {
        use rayon::prelude::*;
        let st = &self.stream;
        let filled = |len: usize, seed: u64| {
            let host: Vec<f32> = (0..len)
                .into_par_iter()
                .map(|i| crate::ops::elementwise::cpu::uniform_at(seed, i as u64) - 0.5)
                .collect();
            self.upload(&host)
        };
        let (x_len, w_len, y_len) = ConvKernel::Fprop.operand_lens(g);
        let (x, w, y) = (filled(x_len, 1)?, filled(w_len, 2)?, filled(y_len, 3)?);
        let mut out = st
            .alloc_zeros::<f32>(x_len.max(w_len).max(y_len))
            .map_err(err("alloc"))?;
        let mut times = Vec::with_capacity(variants.len());
        for &(kernel, launch) in variants {
            let (a, b) = match kernel.pass() {
                ConvPass::Fprop => (&x, &w),
                ConvPass::Dgrad => (&y, &w),
                ConvPass::Wgrad => (&x, &y),
            };
            times.push(self.time_ms(reps, || {
                self.enqueue_primitive(kernel, g, launch, a, b, &mut out)
            })?);
        }
        Ok(times)
    }

    /// Median milliseconds of dgrad's fold of dY on `g` (`conv_fold_dy_f32`) and the bytes it
    /// moves (reads dY, writes the folded dY); None where dgrad does not fold (zero padding,
    /// or padded explicitly).
    pub fn time_fold_dy(&self, g: &ConvGeometry, reps: usize) -> CudaResult<Option<(f64, usize)>> {
        if !dgrad_folds_padding(g) {
            return Ok(None);
        }
        let params = ConvParams::of(g)?;
        let dy_len = g.output_shape().numel();
        let dy = self.upload(&vec![0.5f32; dy_len])?;
        let len = folded_dy_len(g);
        let ms = self.time_ms(reps, || self.fold_dy(&params, &dy, len).map(drop))?;
        Ok(Some((ms, 4 * (dy_len + len))))
    }

    /// C = A B for row-major A [m, k] and B [k, n] through the conv kernels' large tiles
    /// (`gemm_f32`, the compute peak of `bench kernels`), on host data.
    pub fn gemm(
        self: &Arc<Self>,
        (m, n, k): (usize, usize, usize),
        a: &[f32],
        b: &[f32],
    ) -> CudaResult<Vec<f32>> {
        if a.len() != m * k || b.len() != k * n {
            return Err(format!(
                "gemm {m}x{n}x{k}: operands of {} and {} elements",
                a.len(),
                b.len()
            ));
        }
        let (da, db) = (self.upload_buffer(a)?, self.upload_buffer(b)?);
        let mut c = self.alloc(m * n)?;
        let gemm = StridedGemm::dense(m, n, k);
        self.enqueue_gemm(
            &gemm,
            &da.slice().as_view(),
            &db.slice().as_view(),
            &mut c.slice_mut().as_view_mut(),
        )?;
        c.to_host()
    }

    fn enqueue_gemm(
        &self,
        gemm: &StridedGemm,
        a: &CudaView<f32>,
        b: &CudaView<f32>,
        c: &mut CudaViewMut<f32>,
    ) -> CudaResult<()> {
        let i = |v: usize| v as i32;
        let (m, n, k, ldb, ldc) = (i(gemm.m), i(gemm.n), i(gemm.k), i(gemm.ldb), i(gemm.ldc));
        let (batch_a, batch_b, batch_c) = (
            gemm.batch_a as i64,
            gemm.batch_b as i64,
            gemm.batch_c as i64,
        );
        let (batches, k_chunk) = (i(gemm.batch), i(gemm.k_chunk));
        let tile = dense_gemm_tile(gemm.m);
        let function = if tile == 64 {
            &self.functions.gemm_square
        } else {
            &self.functions.gemm
        };
        let mut l = self.stream.launch_builder(function);
        l.arg(&m).arg(&n).arg(&k).arg(a).arg(b).arg(c);
        l.arg(&ldb)
            .arg(&ldc)
            .arg(&batch_a)
            .arg(&batch_b)
            .arg(&batch_c);
        l.arg(&batches).arg(&k_chunk);
        let config = LaunchConfig {
            grid_dim: (
                gemm.n.div_ceil(tile) as u32,
                gemm.m.div_ceil(tile) as u32,
                (gemm.batch * gemm.splits()) as u32,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches gemm_f32 and gemm_square_f32(int M, int N, int K, const float* A,
        // const float* B, float* C, int ldb, int ldc, long long batch_a, long long batch_b,
        // long long batch_c, int batches, int k_chunk); the views reach every row of every
        // matrix of the batch, C those of every split (`StridedGemm`'s callers size them).
        unsafe { l.launch(config) }.map_err(err("gemm_f32"))?;
        Ok(())
    }

    /// A thin conv (`ThinConv`) of `g` on device buffers: the wide operand `wide` (x for
    /// fprop, dy for dgrad), the weights `w`, the result into `out`. The weights' panel is
    /// the GEMMs' A; per slab and depth tap one batched GEMM into Z (a pooled buffer) and one
    /// gather.
    fn enqueue_thin(
        &self,
        thin: &ThinConv,
        g: &ConvGeometry,
        params: &ConvParams,
        wide: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let panel = self.weight_panel(params, thin.pass, w)?;
        let mut z = self.pool.take(thin.z_len(g).max(1))?;
        let wide_sp = thin.wide_positions;
        let a_rows = thin.plane_taps * thin.channels;
        let dgrad = i32::from(thin.pass == ConvPass::Dgrad);
        let i = |v: usize| v as i32;
        for step in thin.steps(g) {
            let len = step.planes * thin.plane;
            if len > 0 {
                let gemm = StridedGemm {
                    m: thin.plane_taps,
                    n: len,
                    k: thin.channels,
                    ldb: wide_sp,
                    ldc: len,
                    batch: step.images,
                    batch_a: 0,
                    batch_b: thin.channels * wide_sp,
                    batch_c: thin.plane_taps * len,
                    k_chunk: thin.channels,
                };
                let a = panel.slice(step.td * a_rows..(step.td + 1) * a_rows);
                let b = wide.slice(step.img_first * gemm.batch_b + step.first * thin.plane..);
                self.enqueue_gemm(&gemm, &a, &b, &mut z.as_view_mut())?;
            }
            // td, first, len, out_first, out_end, accumulate, img_first, images.
            let ints = [
                step.td,
                step.first,
                len,
                step.slab.0,
                step.slab.1,
                usize::from(step.td > 0),
                step.img_first,
                step.images,
            ]
            .map(i);
            let mut l = self.stream.launch_builder(&self.functions.conv_thin_gather);
            l.arg(params).arg(&*z).arg(&mut *out).arg(&dgrad);
            for v in &ints {
                l.arg(v);
            }
            let results = step.images * (step.slab.1 - step.slab.0) * thin.result_plane;
            // SAFETY: matches conv_thin_gather_f32(ConvParams, const float* z, float* out,
            // int dgrad, int td, int first, int len, int out_first, int out_end, int accumulate,
            // int img_first, int images); z holds the GEMM's batch of `images` times k_h * k_w
            // rows of len, out the result.
            unsafe { l.launch(launch_1d(results)) }.map_err(err("conv_thin_gather_f32"))?;
        }
        Ok(())
    }

    /// A Winograd primitive as planned (`Winograd`, kernels/conv.cu), on the operands its
    /// kernel takes (`ConvKernel::operand_lens`), into `out`.
    fn enqueue_winograd(
        &self,
        plan: &Winograd,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        match plan.pass {
            ConvPass::Wgrad => self.enqueue_winograd_wgrad(plan, a, b, out),
            ConvPass::Fprop | ConvPass::Dgrad => self.enqueue_winograd_fprop(plan, a, b, out),
        }
    }

    /// One of the Winograd tile transforms, which take the conv (`plan.conv`), the tile
    /// counts, an input and an output buffer, launched as `config` says.
    fn enqueue_tile_transform(
        &self,
        function: &CudaFunction,
        plan: &Winograd,
        input: &CudaSlice<f32>,
        output: &mut CudaSlice<f32>,
        config: LaunchConfig,
        name: &str,
    ) -> CudaResult<()> {
        let params = ConvParams::of(&plan.conv)?;
        let (tiles_h, tiles_w) = (plan.tiles_h as i32, plan.tiles_w as i32);
        let mut l = self.stream.launch_builder(function);
        l.arg(&params)
            .arg(input)
            .arg(output)
            .arg(&tiles_h)
            .arg(&tiles_w);
        // SAFETY: matches the transforms' (ConvParams, const float* in, float* out, int
        // tiles_h, int tiles_w); `input` holds the conv's operand, `output` the plan's length
        // for it (`Winograd::v_len`, `u_len`).
        unsafe { l.launch(config) }.map_err(err(name))?;
        Ok(())
    }

    /// fprop (or dgrad, as its dual's fprop) by Winograd's transform: the weights `w` into W
    /// and the input `x` (dgrad: dY) into V (pooled buffers), the 16 GEMMs over the input
    /// channels into M, then M transformed into `out`.
    fn enqueue_winograd_fprop(
        &self,
        plan: &Winograd,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let conv = &plan.conv;
        let (c_out, c_in) = (conv.c_out, conv.c_in);
        let mut weights = self.pool.take(plan.pairs_len())?;
        let mut v = self.pool.take(plan.v_len())?;
        let mut m = self.pool.take(plan.u_len())?;
        let f = &self.functions;
        // The weights as stored: w[co, ci] of the primitive's own conv, whose channels the
        // dual swaps.
        let dgrad = plan.pass == ConvPass::Dgrad;
        let (w_out, w_in) = if dgrad { (c_in, c_out) } else { (c_out, c_in) };
        let (w_out_arg, w_in_arg, turned) = (w_out as i32, w_in as i32, i32::from(dgrad));
        let mut l = self.stream.launch_builder(&f.winograd_weights);
        l.arg(w)
            .arg(&mut *weights)
            .arg(&w_out_arg)
            .arg(&w_in_arg)
            .arg(&turned);
        // SAFETY: matches winograd_weights_f32(const float* w, float* out, int c_out, int c_in,
        // int turned); w holds w_out * w_in 3 x 3 kernels, `weights` 16 times their count.
        unsafe { l.launch(launch_1d(c_out * c_in)) }.map_err(err("winograd_weights_f32"))?;
        let threads = launch_1d(c_in * plan.tiles());
        self.enqueue_tile_transform(
            &f.winograd_input,
            plan,
            x,
            &mut v,
            threads,
            "winograd_input_f32",
        )?;
        let gemm = StridedGemm::dense_batch(c_out, plan.tiles(), c_in, winograd::POSITIONS, c_in);
        self.enqueue_gemm(
            &gemm,
            &weights.as_view(),
            &v.as_view(),
            &mut m.as_view_mut(),
        )?;
        let threads = launch_1d(c_out * plan.tiles());
        self.enqueue_tile_transform(
            &f.winograd_output,
            plan,
            &m,
            out,
            threads,
            "winograd_output_f32",
        )
    }

    /// wgrad by Winograd's transform: dY `dy` into U and x `x` into V (pooled buffers), the
    /// 16 GEMMs over the tiles into partial sums per K split, then their sum transformed
    /// back into `out`.
    fn enqueue_winograd_wgrad(
        &self,
        plan: &Winograd,
        x: &CudaSlice<f32>,
        dy: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let (rows, columns) = (plan.conv.c_out, plan.conv.c_in);
        let mut u = self.pool.take(plan.u_len())?;
        let mut v = self.pool.take(plan.v_len())?;
        let mut partial = self.pool.take(plan.pairs_len())?;
        let f = &self.functions;
        let threads = launch_1d(rows * plan.tiles());
        self.enqueue_tile_transform(
            &f.winograd_wgrad_dy,
            plan,
            dy,
            &mut u,
            threads,
            "winograd_wgrad_dy_f32",
        )?;
        let blocks = LaunchConfig {
            grid_dim: (
                plan.tiles().div_ceil(winograd::X_BLOCK_TILES) as u32,
                columns.div_ceil(winograd::X_BLOCK_CHANNELS) as u32,
                1,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        self.enqueue_tile_transform(
            &f.winograd_wgrad_x,
            plan,
            x,
            &mut v,
            blocks,
            "winograd_wgrad_x_f32",
        )?;
        let gemm = StridedGemm::dense_batch(
            rows,
            columns,
            plan.tiles(),
            winograd::POSITIONS,
            plan.k_chunk,
        );
        self.enqueue_gemm(
            &gemm,
            &u.as_view(),
            &v.as_view(),
            &mut partial.as_view_mut(),
        )?;
        let (c_out, c_in, splits) = (rows as i32, columns as i32, plan.splits() as i32);
        let mut l = self.stream.launch_builder(&f.winograd_wgrad_out);
        l.arg(&*partial)
            .arg(out)
            .arg(&c_out)
            .arg(&c_in)
            .arg(&splits);
        // SAFETY: matches winograd_wgrad_out_f32(const float* partial, float* dw, int c_out,
        // int c_in, int splits); partial holds `pairs_len` floats, out the conv's weight.
        unsafe { l.launch(launch_1d(rows * columns)) }.map_err(err("winograd_wgrad_out_f32"))?;
        Ok(())
    }

    /// Median milliseconds of a `size`-cubed `gemm` on device buffers.
    pub fn time_gemm(&self, size: usize, reps: usize) -> CudaResult<f64> {
        let st = &self.stream;
        let len = size * size;
        let a = self.upload(&vec![0.5f32; len])?;
        let b = self.upload(&vec![0.25f32; len])?;
        let mut c = st.alloc_zeros::<f32>(len).map_err(err("alloc"))?;
        let gemm = StridedGemm::dense(size, size, size);
        self.time_ms(reps, || {
            self.enqueue_gemm(&gemm, &a.as_view(), &b.as_view(), &mut c.as_view_mut())
        })
    }
}

/// A batch of `batch` GEMMs C_z[m, n] = A_z[m, k] B_z[k, n] (`gemm_f32`): A_z row-major,
/// B_z's and C_z's rows `ldb` and `ldc` floats apart, matrix z `batch_a`, `batch_b` and
/// `batch_c` floats on. With K in chunks of `k_chunk` (`splits`), split s writes its partial
/// sums `s * batch * batch_c` floats on.
struct StridedGemm {
    m: usize,
    n: usize,
    k: usize,
    ldb: usize,
    ldc: usize,
    batch: usize,
    batch_a: usize,
    batch_b: usize,
    batch_c: usize,
    k_chunk: usize,
}

impl StridedGemm {
    /// One dense row-major GEMM.
    fn dense(m: usize, n: usize, k: usize) -> StridedGemm {
        StridedGemm::dense_batch(m, n, k, 1, k)
    }

    /// `batch` dense row-major GEMMs whose matrices follow each other, K in chunks of
    /// `k_chunk` (splits where it is under k).
    fn dense_batch(m: usize, n: usize, k: usize, batch: usize, k_chunk: usize) -> StridedGemm {
        StridedGemm {
            m,
            n,
            k,
            ldb: n,
            ldc: n,
            batch,
            batch_a: m * k,
            batch_b: k * n,
            batch_c: m * n,
            k_chunk,
        }
    }

    /// K's chunks, each summed by its own blocks.
    fn splits(&self) -> usize {
        self.k.div_ceil(self.k_chunk.max(1)).max(1)
    }
}
