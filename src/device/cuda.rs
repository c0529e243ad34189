//! The CUDA runtime (feature `cuda`): libcuda loaded at run time through cudarc, one context
//! and stream, the embedded kernel modules (the device's own cubin when there is one, else
//! the compute_80 PTX), function handles resolved once, a caching pool for scratch buffers
//! (`super::pool`), and typed launch wrappers.
//!
//! Status: element-wise (activations, dropout, add, mul, scale), reductions (sum, fill),
//! channel concat / split, fused Adam, batch/instance norm (optionally fused with the
//! activation that follows), loss, pad, and conv fprop/dgrad/wgrad (2D and 3D), each direct
//! and as a tiled implicit GEMM (launch plan: `super::tiled_conv`), are here with parity
//! tests against the CPU ops (`tests/cuda_parity.rs`, run by `scripts/gpu-check.sh`; all
//! passed on an H200 except add/mul/scale, sum/fill, concat and the fused norm +
//! activation, written after that run) and host emulation (`tests/kernel_emulation.rs`);
//! the tensors' device storage is still to come, so the engine itself runs on the CPU.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::pool::{Pool, PoolStats, Pooled, RawAllocator};
use super::tiled_conv::{ConvPass, TileShape, TiledLaunch};
use crate::ops::conv::ConvGeometry;
use crate::ops::elementwise::Activation;
use crate::ops::loss::LossKind;
use crate::ops::pad::PadMode;
use crate::ops::pad::cpu::PadGeometry;
use crate::optim::adam::AdamConfig;

mod kernels {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// Why a CUDA call failed, as text for the user.
pub type CudaResult<T> = std::result::Result<T, String>;

fn err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

/// `kernels/conv.cu`'s ConvParams: a conv geometry as 18 ints, passed by value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ConvParams {
    n: i32,
    c_in: i32,
    c_out: i32,
    input: [i32; 3],
    kernel: [i32; 3],
    stride: [i32; 3],
    pad: [i32; 3],
    output: [i32; 3],
}
const _: () = assert!(std::mem::size_of::<ConvParams>() == 72);
// SAFETY: plain-old-data with the C layout the kernel declares (size checked on both sides).
unsafe impl cudarc::driver::DeviceRepr for ConvParams {}

impl ConvParams {
    /// The kernels index with 32-bit ints (64-bit division is several times slower), so
    /// every tensor of the conv must have fewer than 2^31 elements.
    fn of(g: &ConvGeometry) -> CudaResult<ConvParams> {
        let largest = [g.input_shape(), g.output_shape(), g.weight_shape()]
            .iter()
            .map(|s| s.numel())
            .max()
            .unwrap_or(0);
        if largest > i32::MAX as usize {
            return Err(format!(
                "conv tensors of {largest} elements are beyond the CUDA kernels' 32-bit indexing (2^31 - 1); use a smaller batch or patch"
            ));
        }
        let i = |v: [usize; 3]| v.map(|x| x as i32);
        Ok(ConvParams {
            n: g.batch as i32,
            c_in: g.c_in as i32,
            c_out: g.c_out as i32,
            input: i(g.input),
            kernel: i(g.kernel),
            stride: i(g.stride),
            pad: i(g.pad),
            output: i(g.output),
        })
    }
}

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

/// The kernels' function handles, resolved once.
struct Functions {
    pad_fwd: CudaFunction,
    pad_bwd: CudaFunction,
    loss_sums: CudaFunction,
    loss_backward: CudaFunction,
    norm_stats: CudaFunction,
    norm_apply: CudaFunction,
    norm_grad_sums: CudaFunction,
    norm_backward: CudaFunction,
    conv_fprop: CudaFunction,
    conv_fprop_tiled: CudaFunction,
    conv_dgrad: CudaFunction,
    conv_dgrad_tiled: CudaFunction,
    conv_wgrad: CudaFunction,
    conv_wgrad_tiled: CudaFunction,
    conv_fprop_large: CudaFunction,
    conv_dgrad_large: CudaFunction,
    conv_wgrad_large: CudaFunction,
    conv_fprop_narrow: CudaFunction,
    conv_dgrad_narrow: CudaFunction,
    conv_wgrad_narrow: CudaFunction,
    conv_split_sum: CudaFunction,
    gemm: CudaFunction,
    activation_fwd: CudaFunction,
    activation_bwd: CudaFunction,
    dropout: CudaFunction,
    binary: CudaFunction,
    scale: CudaFunction,
    sum_partial: CudaFunction,
    fill: CudaFunction,
    channel_slice_copy: CudaFunction,
    adam: CudaFunction,
}

/// Zeroed f32 buffers on one stream: the raw allocator under the backend's `Pool`.
struct StreamAllocator(Arc<CudaStream>);

impl RawAllocator for StreamAllocator {
    type Buffer = CudaSlice<f32>;
    fn allocate(&self, len: usize) -> Result<CudaSlice<f32>, String> {
        self.0
            .alloc_zeros::<f32>(len)
            .map_err(err(&format!("allocating {len} floats on the device")))
    }
}

/// One GPU with the engine's kernels loaded.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Scratch buffers (split-K partial sums), cached across launches.
    pool: Arc<Pool<StreamAllocator>>,
    /// Blocks the tiled convs aim for: two per multiprocessor (`TiledLaunch::plan`).
    target_blocks: usize,
    functions: Functions,
    _modules: Vec<Arc<CudaModule>>,
}

/// 1D launch over `n` elements: 256-thread blocks, grid-stride kernels.
fn launch_1d(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n.div_ceil(256)).clamp(1, 65535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The conv kernels of `kernels/conv.cu`: each primitive direct (one thread per result, the
/// correctness baseline) and as a tiled implicit GEMM (shape and K split per
/// `TiledLaunch::plan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// Forward: operands x, w.
    Fprop,
    FpropTiled,
    /// Gradient wrt the input (also a transposed conv's forward): operands dy, w.
    Dgrad,
    DgradTiled,
    /// Gradient wrt the weight: operands x, dy.
    Wgrad,
    WgradTiled,
}

impl ConvKernel {
    pub const ALL: [ConvKernel; 6] = [
        ConvKernel::Fprop,
        ConvKernel::FpropTiled,
        ConvKernel::Dgrad,
        ConvKernel::DgradTiled,
        ConvKernel::Wgrad,
        ConvKernel::WgradTiled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConvKernel::Fprop => "fprop",
            ConvKernel::FpropTiled => "fprop-tiled",
            ConvKernel::Dgrad => "dgrad",
            ConvKernel::DgradTiled => "dgrad-tiled",
            ConvKernel::Wgrad => "wgrad",
            ConvKernel::WgradTiled => "wgrad-tiled",
        }
    }

    /// The primitive this kernel computes.
    pub fn pass(self) -> ConvPass {
        match self {
            ConvKernel::Fprop | ConvKernel::FpropTiled => ConvPass::Fprop,
            ConvKernel::Dgrad | ConvKernel::DgradTiled => ConvPass::Dgrad,
            ConvKernel::Wgrad | ConvKernel::WgradTiled => ConvPass::Wgrad,
        }
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

fn loss_code(kind: LossKind) -> i32 {
    match kind {
        LossKind::L1 => 0,
        LossKind::Mse => 1,
        LossKind::BceWithLogits => 2,
    }
}

/// An N, C, spatial tensor under batch norm (`per_sample` false: one group per channel) or
/// instance norm (true: one group per sample and channel).
#[derive(Clone, Copy, Debug)]
struct NormShape {
    n: usize,
    c: usize,
    s: usize,
    per_sample: bool,
}

impl NormShape {
    fn new((n, c, s): (usize, usize, usize), per_sample: bool) -> NormShape {
        NormShape {
            n,
            c,
            s,
            per_sample,
        }
    }
    fn len(self) -> usize {
        self.n * self.c * self.s
    }
    fn groups(self) -> usize {
        if self.per_sample {
            self.n * self.c
        } else {
            self.c
        }
    }
    /// The kernels' (n, c, s, per_sample) ints.
    fn args(self) -> [i32; 4] {
        [self.n, self.c, self.s, self.per_sample as usize].map(|v| v as i32)
    }
    /// One 256-thread block per group (the statistics and gradient-sum kernels).
    fn per_group(self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.groups() as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// A norm's per-group statistics on the device (`var`: the biased variance).
struct NormStats {
    mean: CudaSlice<f32>,
    var: CudaSlice<f32>,
    invstd: CudaSlice<f32>,
}

/// `kernels/activation.cuh`'s kind and slope; None is ACT_NONE (no fused activation).
fn fused_activation_code(act: Option<Activation>) -> (i32, f32) {
    act.map_or((-1, 0.0), activation_code)
}

fn activation_code(act: Activation) -> (i32, f32) {
    match act {
        Activation::Relu => (0, 0.0),
        Activation::LeakyRelu(s) => (1, s as f32),
        Activation::Tanh => (2, 0.0),
        Activation::Sigmoid => (3, 0.0),
    }
}

impl CudaBackend {
    /// Opens GPU `ordinal`. A machine without the driver library or without a device is an
    /// error with the reason, never a panic.
    pub fn new(ordinal: usize) -> CudaResult<CudaBackend> {
        // SAFETY: only probes whether the driver library can be loaded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver library (libcuda) on this machine".into());
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(err(&format!("cannot open CUDA device {ordinal}")))?;
        let (major, _) = ctx
            .compute_capability()
            .map_err(err("compute capability"))?;
        // The device's own cubin when there is one, else the PTX for the driver to compile.
        let load = |what: &str, ptx: &'static str, sm80: &'static [u8], sm90: &'static [u8]| {
            let image = match major {
                9 => Ptx::from_binary(sm90.to_vec()),
                8 => Ptx::from_binary(sm80.to_vec()),
                _ => Ptx::from_src(ptx),
            };
            ctx.load_module(image)
                .map_err(err(&format!("loading {what} kernels")))
        };
        use kernels::*;
        let elementwise = load(
            "elementwise",
            ELEMENTWISE_PTX,
            ELEMENTWISE_SM80,
            ELEMENTWISE_SM90,
        )?;
        let adam = load("adam", ADAM_PTX, ADAM_SM80, ADAM_SM90)?;
        let conv = load("conv", CONV_PTX, CONV_SM80, CONV_SM90)?;
        let norm = load("norm", NORM_PTX, NORM_SM80, NORM_SM90)?;
        let loss = load("loss", LOSS_PTX, LOSS_SM80, LOSS_SM90)?;
        let pad = load("pad", PAD_PTX, PAD_SM80, PAD_SM90)?;
        let reduce = load("reduce", REDUCE_PTX, REDUCE_SM80, REDUCE_SM90)?;
        let concat = load("concat", CONCAT_PTX, CONCAT_SM80, CONCAT_SM90)?;
        let f = |m: &Arc<CudaModule>, name: &str| m.load_function(name).map_err(err(name));
        let functions = Functions {
            pad_fwd: f(&pad, "pad_fwd_f32")?,
            pad_bwd: f(&pad, "pad_bwd_f32")?,
            loss_sums: f(&loss, "loss_partial_sums_f32")?,
            loss_backward: f(&loss, "loss_backward_f32")?,
            norm_stats: f(&norm, "norm_stats_f32")?,
            norm_apply: f(&norm, "norm_apply_f32")?,
            norm_grad_sums: f(&norm, "norm_grad_sums_f32")?,
            norm_backward: f(&norm, "norm_backward_f32")?,
            conv_fprop: f(&conv, "conv_fprop_f32")?,
            conv_fprop_tiled: f(&conv, "conv_fprop_tiled_f32")?,
            conv_dgrad: f(&conv, "conv_dgrad_f32")?,
            conv_dgrad_tiled: f(&conv, "conv_dgrad_tiled_f32")?,
            conv_wgrad: f(&conv, "conv_wgrad_f32")?,
            conv_wgrad_tiled: f(&conv, "conv_wgrad_tiled_f32")?,
            conv_fprop_large: f(&conv, "conv_fprop_large_f32")?,
            conv_dgrad_large: f(&conv, "conv_dgrad_large_f32")?,
            conv_wgrad_large: f(&conv, "conv_wgrad_large_f32")?,
            conv_fprop_narrow: f(&conv, "conv_fprop_narrow_f32")?,
            conv_dgrad_narrow: f(&conv, "conv_dgrad_narrow_f32")?,
            conv_wgrad_narrow: f(&conv, "conv_wgrad_narrow_f32")?,
            conv_split_sum: f(&conv, "conv_split_sum_f32")?,
            gemm: f(&conv, "gemm_f32")?,
            activation_fwd: f(&elementwise, "activation_fwd_f32")?,
            activation_bwd: f(&elementwise, "activation_bwd_f32")?,
            dropout: f(&elementwise, "dropout_f32")?,
            binary: f(&elementwise, "binary_f32")?,
            scale: f(&elementwise, "scale_f32")?,
            sum_partial: f(&reduce, "sum_partial_f32")?,
            fill: f(&reduce, "fill_f32")?,
            channel_slice_copy: f(&concat, "channel_slice_copy_f32")?,
            adam: f(&adam, "adam_step_f32")?,
        };
        let stream = ctx.default_stream();
        let multiprocessors = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(err("multiprocessor count"))?;
        Ok(CudaBackend {
            ctx,
            pool: Pool::new(StreamAllocator(Arc::clone(&stream))),
            stream,
            target_blocks: 2 * multiprocessors.max(1) as usize,
            functions,
            _modules: vec![elementwise, adam, conv, norm, loss, pad, reduce, concat],
        })
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> String {
        self.ctx
            .name()
            .unwrap_or_else(|_| "unknown CUDA device".into())
    }

    /// The kernel behind a conv primitive; tiled ones come in the planned tile shape.
    fn conv_function(&self, kernel: ConvKernel, shape: TileShape) -> &CudaFunction {
        let f = &self.functions;
        match (kernel, shape) {
            (ConvKernel::Fprop, _) => &f.conv_fprop,
            (ConvKernel::Dgrad, _) => &f.conv_dgrad,
            (ConvKernel::Wgrad, _) => &f.conv_wgrad,
            (ConvKernel::FpropTiled, TileShape::Square) => &f.conv_fprop_tiled,
            (ConvKernel::DgradTiled, TileShape::Square) => &f.conv_dgrad_tiled,
            (ConvKernel::WgradTiled, TileShape::Square) => &f.conv_wgrad_tiled,
            (ConvKernel::FpropTiled, TileShape::Large) => &f.conv_fprop_large,
            (ConvKernel::DgradTiled, TileShape::Large) => &f.conv_dgrad_large,
            (ConvKernel::WgradTiled, TileShape::Large) => &f.conv_wgrad_large,
            (ConvKernel::FpropTiled, TileShape::Narrow) => &f.conv_fprop_narrow,
            (ConvKernel::DgradTiled, TileShape::Narrow) => &f.conv_dgrad_narrow,
            (ConvKernel::WgradTiled, TileShape::Narrow) => &f.conv_wgrad_narrow,
        }
    }

    /// One conv primitive on host data, as its CPU op (`ConvKernel::operand_lens` says
    /// which): `a`, `b` in, the result out (the output buffer is NaN-poisoned first).
    pub fn conv(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        a: &[f32],
        b: &[f32],
    ) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let (da, db) = (
            s.clone_htod(a).map_err(err("copy in"))?,
            s.clone_htod(b).map_err(err("copy in"))?,
        );
        let (_, _, out_len) = kernel.operand_lens(g);
        let mut out = s
            .clone_htod(&vec![f32::NAN; out_len])
            .map_err(err("alloc"))?;
        let mut workspace = self.conv_workspace(kernel, g, None)?;
        self.launch_conv(kernel, g, None, &da, &db, &mut out, &mut workspace)?;
        s.clone_dtoh(&out).map_err(err("copy out"))
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
            Some(shape) => TiledLaunch::with_shape(gemm, shape, self.target_blocks),
            None => TiledLaunch::plan(gemm, self.target_blocks),
        }
    }

    /// The split-K partial sums `kernel` needs on `g` (a small stand-in when none), from the
    /// backend's caching pool.
    fn conv_workspace(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        shape: Option<TileShape>,
    ) -> CudaResult<Pooled<StreamAllocator>> {
        let len = if kernel.tiled() {
            self.tiled_launch(kernel, g, shape).workspace
        } else {
            0
        };
        self.pool.take(len)
    }

    /// What the backend's caching pool holds and has held (elements of f32).
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Launches one conv primitive on device buffers of the sizes `g` implies; tiled kernels
    /// (in tiles of `shape`, see `tiled_launch`) with split K add their partial sums (in
    /// `workspace`, from `conv_workspace` with the same shape) after.
    #[allow(clippy::too_many_arguments)]
    fn launch_conv(
        &self,
        kernel: ConvKernel,
        g: &ConvGeometry,
        shape: Option<TileShape>,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        workspace: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let params = ConvParams::of(g)?;
        let st = &self.stream;
        let plan = self.tiled_launch(kernel, g, shape);
        let mut launch = st.launch_builder(self.conv_function(kernel, plan.shape));
        launch.arg(&params).arg(a).arg(b).arg(&mut *out);
        if !kernel.tiled() {
            // SAFETY: matches the direct kernels' (ConvParams, const float*, const float*,
            // float*); the buffers have the sizes the geometry implies.
            unsafe { launch.launch(launch_1d(kernel.operand_lens(g).2)) }
                .map_err(err(kernel.name()))?;
            return Ok(());
        }
        launch.arg(&mut *workspace).arg(&plan.k_chunk);
        let config = LaunchConfig {
            grid_dim: plan.grid,
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches the tiled kernels' (ConvParams, const float*, const float*, float*,
        // float* partial, int k_chunk); with several splits `workspace` holds
        // `plan.workspace` floats (`conv_workspace`), else the kernels do not touch it.
        unsafe { launch.launch(config) }.map_err(err(kernel.name()))?;
        if plan.splits > 1 {
            let len = kernel.operand_lens(g).2;
            let (len_arg, splits) = (len as i32, plan.splits as i32);
            let mut sum = st.launch_builder(&self.functions.conv_split_sum);
            sum.arg(&*workspace)
                .arg(&mut *out)
                .arg(&len_arg)
                .arg(&splits);
            // SAFETY: matches (const float* partial, float* out, int len, int splits);
            // `workspace` holds splits * len floats, `out` len.
            unsafe { sum.launch(launch_1d(len)) }.map_err(err("conv split sum"))?;
        }
        Ok(())
    }

    /// Batch norm (`per_sample` false) or instance norm (true) in training mode with batch
    /// statistics, followed by `act` when given (fused): returns y, the group means and the
    /// biased group variances. Absent gamma / beta are passed as ones / zeros.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn norm_forward(
        &self,
        x: &[f32],
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        gamma: &[f32],
        beta: &[f32],
        act: Option<Activation>,
    ) -> CudaResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let st = &self.stream;
        let shape = NormShape::new((n, c, s), per_sample);
        let up = |v: &[f32]| st.clone_htod(v).map_err(err("copy in"));
        let nan = |len: usize| up(&vec![f32::NAN; len]);
        let (dx, dg, db) = (up(x)?, up(gamma)?, up(beta)?);
        let groups = shape.groups();
        let mut stats = NormStats {
            mean: nan(groups)?,
            var: nan(groups)?,
            invstd: nan(groups)?,
        };
        let mut y = nan(x.len())?;
        self.launch_norm_forward(shape, &dx, (&dg, &db), &mut stats, &mut y, act)?;
        let out = |d| st.clone_dtoh(d).map_err(err("copy out"));
        Ok((out(&y)?, out(&stats.mean)?, out(&stats.var)?))
    }

    /// Gradients of [`norm_forward`] given its statistics: (dx, dgamma, dbeta). With a fused
    /// activation, `fused` holds its output y (act' is taken from y) and the activation.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn norm_backward(
        &self,
        dy: &[f32],
        x: &[f32],
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        mean: &[f32],
        invstd: &[f32],
        gamma: &[f32],
        batch_stats: bool,
        fused: Option<(&[f32], Activation)>,
    ) -> CudaResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let st = &self.stream;
        let shape = NormShape::new((n, c, s), per_sample);
        let groups = shape.groups();
        let up = |v: &[f32]| st.clone_htod(v).map_err(err("copy in"));
        let (ddy, dx_in, dg) = (up(dy)?, up(x)?, up(gamma)?);
        let stats = NormStats {
            mean: up(mean)?,
            var: up(&[0.0])?,
            invstd: up(invstd)?,
        };
        // The fused activation's output (read only with one).
        let y = up(fused.map_or(&[0.0][..], |f| f.0))?;
        let mut sums = up(&vec![f32::NAN; 2 * groups])?;
        let mut dx = up(&vec![f32::NAN; x.len()])?;
        let fused = fused.map(|f| (&y, f.1));
        self.launch_norm_backward(
            shape,
            (&ddy, &dx_in, &dg),
            &stats,
            fused,
            batch_stats,
            (&mut sums, &mut dx),
        )?;
        let sums = st.clone_dtoh(&sums).map_err(err("copy out"))?;
        let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
        for g in 0..groups {
            dbeta[g % c] += sums[2 * g];
            dgamma[g % c] += sums[2 * g + 1];
        }
        Ok((st.clone_dtoh(&dx).map_err(err("copy out"))?, dgamma, dbeta))
    }

    /// `norm_stats_f32` then `norm_apply_f32` on device buffers: `stats` and `y` are written.
    fn launch_norm_forward(
        &self,
        shape: NormShape,
        x: &CudaSlice<f32>,
        (gamma, beta): (&CudaSlice<f32>, &CudaSlice<f32>),
        stats: &mut NormStats,
        y: &mut CudaSlice<f32>,
        act: Option<Activation>,
    ) -> CudaResult<()> {
        let st = &self.stream;
        let (act_kind, slope) = fused_activation_code(act);
        let [ni, ci, si, ps] = shape.args();
        let eps = crate::ops::norm::EPS;
        let mut b = st.launch_builder(&self.functions.norm_stats);
        b.arg(x)
            .arg(&mut stats.mean)
            .arg(&mut stats.var)
            .arg(&mut stats.invstd)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&eps);
        // SAFETY: matches norm_stats_f32; one block per group, group buffers hold `groups` floats.
        unsafe { b.launch(shape.per_group()) }.map_err(err("norm_stats_f32"))?;
        let mut b = st.launch_builder(&self.functions.norm_apply);
        b.arg(x)
            .arg(&stats.mean)
            .arg(&stats.invstd)
            .arg(gamma)
            .arg(beta)
            .arg(y)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_apply_f32; x and y hold n * c * s floats, gamma / beta c.
        unsafe { b.launch(launch_1d(shape.len())) }.map_err(err("norm_apply_f32"))?;
        Ok(())
    }

    /// `norm_grad_sums_f32` then `norm_backward_f32` on device buffers: `sums` (two per group)
    /// and `dx` are written. `fused`: the fused activation's output and the activation.
    fn launch_norm_backward(
        &self,
        shape: NormShape,
        (dy, x, gamma): (&CudaSlice<f32>, &CudaSlice<f32>, &CudaSlice<f32>),
        stats: &NormStats,
        fused: Option<(&CudaSlice<f32>, Activation)>,
        batch_stats: bool,
        (sums, dx): (&mut CudaSlice<f32>, &mut CudaSlice<f32>),
    ) -> CudaResult<()> {
        let st = &self.stream;
        let (act_kind, slope) = fused_activation_code(fused.map(|f| f.1));
        // Without a fused activation the kernels do not read y: any buffer stands in.
        let y = fused.map_or(dy, |f| f.0);
        let [ni, ci, si, ps] = shape.args();
        let bs = batch_stats as i32;
        let mut b = st.launch_builder(&self.functions.norm_grad_sums);
        b.arg(dy)
            .arg(y)
            .arg(x)
            .arg(&stats.mean)
            .arg(&stats.invstd)
            .arg(&mut *sums)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_grad_sums_f32; sums holds 2 * groups floats.
        unsafe { b.launch(shape.per_group()) }.map_err(err("norm_grad_sums_f32"))?;
        let mut b = st.launch_builder(&self.functions.norm_backward);
        b.arg(dy)
            .arg(y)
            .arg(x)
            .arg(&stats.mean)
            .arg(&stats.invstd)
            .arg(gamma)
            .arg(&*sums)
            .arg(dx)
            .arg(&ni)
            .arg(&ci)
            .arg(&si)
            .arg(&ps)
            .arg(&bs)
            .arg(&act_kind)
            .arg(&slope);
        // SAFETY: matches norm_backward_f32; dy, x and dx hold n * c * s floats.
        unsafe { b.launch(launch_1d(shape.len())) }.map_err(err("norm_backward_f32"))?;
        Ok(())
    }

    /// Median milliseconds of a norm's forward (statistics + apply, fused LeakyReLU(0.2)) and
    /// backward (gradient sums + dx with batch statistics) on device buffers.
    pub fn time_norm(
        &self,
        (n, c, s): (usize, usize, usize),
        per_sample: bool,
        reps: usize,
    ) -> CudaResult<(f64, f64)> {
        let st = &self.stream;
        let shape = NormShape::new((n, c, s), per_sample);
        let filled = |len: usize, v: f32| st.clone_htod(&vec![v; len]).map_err(err("alloc"));
        let (x, dy, gamma, beta) = (
            filled(shape.len(), 0.5)?,
            filled(shape.len(), 0.25)?,
            filled(c, 1.0)?,
            filled(c, 0.0)?,
        );
        let groups = shape.groups();
        let mut stats = NormStats {
            mean: filled(groups, 0.0)?,
            var: filled(groups, 0.0)?,
            invstd: filled(groups, 0.0)?,
        };
        let (mut y, mut dx, mut sums) = (
            filled(shape.len(), 0.0)?,
            filled(shape.len(), 0.0)?,
            filled(2 * groups, 0.0)?,
        );
        let act = Some(Activation::LeakyRelu(0.2));
        let forward = self.time_ms(reps, || {
            self.launch_norm_forward(shape, &x, (&gamma, &beta), &mut stats, &mut y, act)
        })?;
        let backward = self.time_ms(reps, || {
            let fused = act.map(|a| (&y, a));
            self.launch_norm_backward(
                shape,
                (&dy, &x, &gamma),
                &stats,
                fused,
                true,
                (&mut sums, &mut dx),
            )
        })?;
        Ok((forward, backward))
    }

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
        let dp = st.clone_htod(pred).map_err(err("copy in"))?;
        let dt = st
            .clone_htod(target.unwrap_or(&[0.0]))
            .map_err(err("copy in"))?;
        let cfg = launch_1d(pred.len());
        let blocks = cfg.grid_dim.0 as usize;
        let mut partial = st
            .clone_htod(&vec![f64::NAN; blocks])
            .map_err(err("alloc"))?;
        let (k, has, n) = (loss_code(kind), target.is_some() as i32, pred.len() as i64);
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
        let sums = st.clone_dtoh(&partial).map_err(err("copy out"))?;
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
        let dp = st.clone_htod(pred).map_err(err("copy in"))?;
        let dt = st
            .clone_htod(target.unwrap_or(&[0.0]))
            .map_err(err("copy in"))?;
        let mut grad_p = st
            .clone_htod(&vec![f32::NAN; pred.len()])
            .map_err(err("alloc"))?;
        let mut grad_t = st
            .clone_htod(&vec![
                f32::NAN;
                if target.is_some() { pred.len() } else { 1 }
            ])
            .map_err(err("alloc"))?;
        let (k, has, n) = (loss_code(kind), target.is_some() as i32, pred.len() as i64);
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
        let gp = st.clone_dtoh(&grad_p).map_err(err("copy out"))?;
        let gt = if target.is_some() {
            Some(st.clone_dtoh(&grad_t).map_err(err("copy out"))?)
        } else {
            None
        };
        Ok((gp, gt))
    }

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
        let d = st.clone_htod(data).map_err(err("copy in"))?;
        let mut out = st
            .clone_htod(&vec![f32::NAN; out_size])
            .map_err(err("alloc"))?;
        let params = PadParams {
            planes: g.planes as i32,
            input: g.input.map(|v| v as i32),
            before: g.pads.map(|p| p[0] as i32),
            after: g.pads.map(|p| p[1] as i32),
            mode: match mode {
                PadMode::Zero => 0,
                PadMode::Reflect => 1,
                PadMode::Replicate => 2,
            },
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
        st.clone_dtoh(&out).map_err(err("copy out"))
    }

    /// Median milliseconds of `launch` over `reps` runs after one warm-up, by CUDA events.
    fn time_ms(&self, reps: usize, mut launch: impl FnMut() -> CudaResult<()>) -> CudaResult<f64> {
        use cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT;
        launch()?;
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps.max(1) {
            let start = self
                .ctx
                .new_event(Some(CU_EVENT_DEFAULT))
                .map_err(err("event"))?;
            let end = self
                .ctx
                .new_event(Some(CU_EVENT_DEFAULT))
                .map_err(err("event"))?;
            start.record(&self.stream).map_err(err("event record"))?;
            launch()?;
            end.record(&self.stream).map_err(err("event record"))?;
            times.push(start.elapsed_ms(&end).map_err(err("event timing"))? as f64);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// Median milliseconds of each conv primitive in `variants` (a kernel, and for tiled ones
    /// a tile shape or None for the planned one) on `g`, all on one set of device buffers (x,
    /// w, y filled with values in [-0.5, 0.5), plus one output buffer), so that a batch-16
    /// layer is filled once rather than once per variant.
    pub fn time_conv(
        &self,
        g: &ConvGeometry,
        variants: &[(ConvKernel, Option<TileShape>)],
        reps: usize,
    ) -> CudaResult<Vec<f64>> {
        use rayon::prelude::*;
        let st = &self.stream;
        let filled = |len: usize, seed: u64| {
            let host: Vec<f32> = (0..len)
                .into_par_iter()
                .map(|i| crate::ops::elementwise::cpu::uniform_at(seed, i as u64) - 0.5)
                .collect();
            st.clone_htod(&host).map_err(err("copy in"))
        };
        let (x_len, w_len, y_len) = ConvKernel::Fprop.operand_lens(g);
        let (x, w, y) = (filled(x_len, 1)?, filled(w_len, 2)?, filled(y_len, 3)?);
        let mut out = st
            .alloc_zeros::<f32>(x_len.max(w_len).max(y_len))
            .map_err(err("alloc"))?;
        let mut times = Vec::with_capacity(variants.len());
        for &(kernel, shape) in variants {
            let (a, b) = match kernel.pass() {
                ConvPass::Fprop => (&x, &w),
                ConvPass::Dgrad => (&y, &w),
                ConvPass::Wgrad => (&x, &y),
            };
            let mut workspace = self.conv_workspace(kernel, g, shape)?;
            times.push(self.time_ms(reps, || {
                self.launch_conv(kernel, g, shape, a, b, &mut out, &mut workspace)
            })?);
        }
        Ok(times)
    }

    /// C = A B for row-major A [m, k] and B [k, n] through the conv kernels' large tiles
    /// (`gemm_f32`, the compute peak of `bench kernels`), on host data.
    pub fn gemm(
        &self,
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
        let s = &self.stream;
        let (da, db) = (
            s.clone_htod(a).map_err(err("copy in"))?,
            s.clone_htod(b).map_err(err("copy in"))?,
        );
        let mut c = s.clone_htod(&vec![f32::NAN; m * n]).map_err(err("alloc"))?;
        self.launch_gemm((m, n, k), &da, &db, &mut c)?;
        s.clone_dtoh(&c).map_err(err("copy out"))
    }

    fn launch_gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> CudaResult<()> {
        let (mi, ni, ki) = (m as i32, n as i32, k as i32);
        let mut l = self.stream.launch_builder(&self.functions.gemm);
        l.arg(&mi).arg(&ni).arg(&ki).arg(a).arg(b).arg(c);
        let config = LaunchConfig {
            grid_dim: (n.div_ceil(128) as u32, m.div_ceil(128) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches gemm_f32(int M, int N, int K, const float* A, const float* B,
        // float* C); the buffers hold m * k, k * n and m * n floats.
        unsafe { l.launch(config) }.map_err(err("gemm_f32"))?;
        Ok(())
    }

    /// Median milliseconds of a `size`-cubed `gemm` on device buffers.
    pub fn time_gemm(&self, size: usize, reps: usize) -> CudaResult<f64> {
        let st = &self.stream;
        let len = size * size;
        let a = st.clone_htod(&vec![0.5f32; len]).map_err(err("alloc"))?;
        let b = st.clone_htod(&vec![0.25f32; len]).map_err(err("alloc"))?;
        let mut c = st.alloc_zeros::<f32>(len).map_err(err("alloc"))?;
        self.time_ms(reps, || {
            self.launch_gemm((size, size, size), &a, &b, &mut c)
        })
    }

    /// Device-to-device copy bandwidth in GB/s (read + write bytes), the memory-bound peak.
    pub fn copy_bandwidth(&self, bytes: usize, reps: usize) -> CudaResult<f64> {
        let n = bytes / 4;
        let src = self
            .stream
            .clone_htod(&vec![1.0f32; n])
            .map_err(err("copy in"))?;
        let mut dst = self.stream.alloc_zeros::<f32>(n).map_err(err("alloc"))?;
        let ms = self.time_ms(reps, || {
            self.stream
                .memcpy_dtod(&src, &mut dst)
                .map_err(err("memcpy_dtod"))
        })?;
        Ok(2.0 * bytes as f64 / (ms * 1e-3) / 1e9)
    }

    /// Median milliseconds of one fused Adam step over `n` parameters.
    pub fn time_adam(&self, n: usize, reps: usize) -> CudaResult<f64> {
        let st = &self.stream;
        let mut p = st.clone_htod(&vec![0.5f32; n]).map_err(err("alloc"))?;
        let g = st.clone_htod(&vec![0.01f32; n]).map_err(err("alloc"))?;
        let (mut m, mut v) = (
            st.alloc_zeros::<f32>(n).map_err(err("alloc"))?,
            st.alloc_zeros::<f32>(n).map_err(err("alloc"))?,
        );
        let (nn, b1, b2, eps, wd, step, bc2) = (
            n as u32, 0.5f32, 0.999f32, 1e-8f32, 0.0f32, 2e-4f32, 0.05f32,
        );
        self.time_ms(reps, || {
            let mut b = st.launch_builder(&self.functions.adam);
            b.arg(&mut p)
                .arg(&g)
                .arg(&mut m)
                .arg(&mut v)
                .arg(&nn)
                .arg(&b1)
                .arg(&b2)
                .arg(&eps)
                .arg(&wd)
                .arg(&step)
                .arg(&bc2);
            // SAFETY: as in `adam_step`.
            unsafe { b.launch(launch_1d(n)) }
                .map(|_| ())
                .map_err(err("adam_step_f32"))
        })
    }

    /// `act(x)` on the GPU (host in, host out). The output buffer starts as NaN, so an element
    /// the kernel fails to write shows.
    pub fn activation(&self, x: &[f32], act: Activation) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let dx = s.clone_htod(x).map_err(err("copy in"))?;
        let mut dy = s
            .clone_htod(&vec![f32::NAN; x.len()])
            .map_err(err("alloc"))?;
        let (kind, slope) = activation_code(act);
        let n = x.len() as u32;
        let mut b = s.launch_builder(&self.functions.activation_fwd);
        b.arg(&dx).arg(&mut dy).arg(&n).arg(&kind).arg(&slope);
        // SAFETY: argument types and order match activation_fwd_f32; both buffers hold n floats.
        unsafe { b.launch(launch_1d(x.len())) }.map_err(err("activation_fwd_f32"))?;
        s.clone_dtoh(&dy).map_err(err("copy out"))
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
        let (ddy, dx_in, dy_out) = (
            s.clone_htod(dy).map_err(err("copy in"))?,
            s.clone_htod(x).map_err(err("copy in"))?,
            s.clone_htod(y).map_err(err("copy in"))?,
        );
        let mut dx = s
            .clone_htod(&vec![f32::NAN; x.len()])
            .map_err(err("alloc"))?;
        let (kind, slope) = activation_code(act);
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
        s.clone_dtoh(&dx).map_err(err("copy out"))
    }

    /// Training-mode dropout with the CPU's counter-based mask.
    pub fn dropout(&self, x: &[f32], p: f64, seed: u64) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let dx = s.clone_htod(x).map_err(err("copy in"))?;
        let mut dy = s
            .clone_htod(&vec![f32::NAN; x.len()])
            .map_err(err("alloc"))?;
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
        s.clone_dtoh(&dy).map_err(err("copy out"))
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
        let (da, db) = (
            s.clone_htod(a).map_err(err("copy in"))?,
            s.clone_htod(b).map_err(err("copy in"))?,
        );
        let mut y = s
            .clone_htod(&vec![f32::NAN; a.len()])
            .map_err(err("alloc"))?;
        let (n, kind) = (a.len() as u32, multiply as i32);
        let mut l = s.launch_builder(&self.functions.binary);
        l.arg(&da).arg(&db).arg(&mut y).arg(&n).arg(&kind);
        // SAFETY: matches binary_f32; all three buffers hold n floats.
        unsafe { l.launch(launch_1d(a.len())) }.map_err(err("binary_f32"))?;
        s.clone_dtoh(&y).map_err(err("copy out"))
    }

    /// `factor * x`.
    pub fn scale(&self, x: &[f32], factor: f32) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let dx = s.clone_htod(x).map_err(err("copy in"))?;
        let mut y = s
            .clone_htod(&vec![f32::NAN; x.len()])
            .map_err(err("alloc"))?;
        let n = x.len() as u32;
        let mut l = s.launch_builder(&self.functions.scale);
        l.arg(&dx).arg(&mut y).arg(&n).arg(&factor);
        // SAFETY: matches scale_f32; both buffers hold n floats.
        unsafe { l.launch(launch_1d(x.len())) }.map_err(err("scale_f32"))?;
        s.clone_dtoh(&y).map_err(err("copy out"))
    }

    /// Sum of all elements (per-block double partial sums, added here in f64).
    pub fn sum(&self, x: &[f32]) -> CudaResult<f64> {
        let s = &self.stream;
        let dx = s.clone_htod(x).map_err(err("copy in"))?;
        let cfg = launch_1d(x.len());
        let mut partial = s
            .clone_htod(&vec![f64::NAN; cfg.grid_dim.0 as usize])
            .map_err(err("alloc"))?;
        let n = x.len() as i64;
        let mut l = s.launch_builder(&self.functions.sum_partial);
        l.arg(&dx).arg(&n).arg(&mut partial);
        // SAFETY: matches sum_partial_f32; `partial` holds one double per block.
        unsafe { l.launch(cfg) }.map_err(err("sum_partial_f32"))?;
        Ok(s.clone_dtoh(&partial)
            .map_err(err("copy out"))?
            .iter()
            .sum())
    }

    /// `n` copies of `value` (the backward of sum and mean).
    pub fn fill(&self, n: usize, value: f32) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let mut y = s.clone_htod(&vec![f32::NAN; n]).map_err(err("alloc"))?;
        let len = n as i64;
        let mut l = s.launch_builder(&self.functions.fill);
        l.arg(&mut y).arg(&len).arg(&value);
        // SAFETY: matches fill_f32; `y` holds n floats.
        unsafe { l.launch(launch_1d(n)) }.map_err(err("fill_f32"))?;
        s.clone_dtoh(&y).map_err(err("copy out"))
    }

    /// `parts` (data, channels; each N, C_i, spatial) concatenated along the channels, one
    /// launch per part, as `ops::concat::concat_channels`.
    pub fn concat_channels(
        &self,
        parts: &[(&[f32], usize)],
        n: usize,
        spatial: usize,
    ) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let total: usize = parts.iter().map(|p| p.1).sum();
        let mut whole = s
            .clone_htod(&vec![f32::NAN; n * total * spatial])
            .map_err(err("alloc"))?;
        let mut c0 = 0;
        for &(data, c) in parts {
            let part = s.clone_htod(data).map_err(err("copy in"))?;
            self.channel_slice_copy(&part, &mut whole, data.len(), [c, c0, total, spatial], 1)?;
            c0 += c;
        }
        s.clone_dtoh(&whole).map_err(err("copy out"))
    }

    /// Part `index`'s slice of the gradient `dy` of a concat of parts with `channels`
    /// (`ops::concat::split_channels`).
    pub fn split_channels(
        &self,
        dy: &[f32],
        channels: &[usize],
        index: usize,
        n: usize,
        spatial: usize,
    ) -> CudaResult<Vec<f32>> {
        let s = &self.stream;
        let total: usize = channels.iter().sum();
        let (c0, c) = (channels[..index].iter().sum::<usize>(), channels[index]);
        let whole = s.clone_htod(dy).map_err(err("copy in"))?;
        let len = n * c * spatial;
        let mut part = s.clone_htod(&vec![f32::NAN; len]).map_err(err("alloc"))?;
        self.channel_slice_copy(&whole, &mut part, len, [c, c0, total, spatial], 0)?;
        s.clone_dtoh(&part).map_err(err("copy out"))
    }

    /// One `channel_slice_copy_f32` launch over a part of `part_len` elements; `layout` is
    /// (part channels, first channel in the whole, whole channels, spatial).
    fn channel_slice_copy(
        &self,
        src: &CudaSlice<f32>,
        dst: &mut CudaSlice<f32>,
        part_len: usize,
        layout: [usize; 4],
        into_whole: i32,
    ) -> CudaResult<()> {
        let [c, c0, total, spatial] = layout.map(|v| v as i32);
        let len = part_len as i64;
        let mut l = self
            .stream
            .launch_builder(&self.functions.channel_slice_copy);
        l.arg(src)
            .arg(dst)
            .arg(&len)
            .arg(&c)
            .arg(&c0)
            .arg(&total)
            .arg(&spatial)
            .arg(&into_whole);
        // SAFETY: matches channel_slice_copy_f32; the part holds part_len floats and the
        // whole N * total * spatial, as the layout says.
        unsafe { l.launch(launch_1d(part_len)) }.map_err(err("channel_slice_copy_f32"))?;
        Ok(())
    }

    /// One fused Adam step over a whole arena (parameters, gradients, moments), step `t`
    /// (1-based) at learning rate `lr`; updates `p`, `m`, `v` in place.
    #[allow(clippy::too_many_arguments)] // the kernel's operands, one by one
    pub fn adam_step(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        cfg: &AdamConfig,
        lr: f64,
        t: i32,
    ) -> CudaResult<()> {
        let s = &self.stream;
        let (mut dp, dg, mut dm, mut dv) = (
            s.clone_htod(p).map_err(err("copy in"))?,
            s.clone_htod(g).map_err(err("copy in"))?,
            s.clone_htod(m).map_err(err("copy in"))?,
            s.clone_htod(v).map_err(err("copy in"))?,
        );
        let n = p.len() as u32;
        let (b1, b2, eps, wd) = (
            cfg.beta1 as f32,
            cfg.beta2 as f32,
            cfg.eps as f32,
            cfg.weight_decay as f32,
        );
        let step_size = (lr / (1.0 - cfg.beta1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - cfg.beta2.powi(t)).sqrt() as f32;
        let mut b = s.launch_builder(&self.functions.adam);
        b.arg(&mut dp)
            .arg(&dg)
            .arg(&mut dm)
            .arg(&mut dv)
            .arg(&n)
            .arg(&b1)
            .arg(&b2)
            .arg(&eps)
            .arg(&wd)
            .arg(&step_size)
            .arg(&bc2_sqrt);
        // SAFETY: matches adam_step_f32; the four buffers hold n floats.
        unsafe { b.launch(launch_1d(p.len())) }.map_err(err("adam_step_f32"))?;
        s.memcpy_dtoh(&dp, p).map_err(err("copy out"))?;
        s.memcpy_dtoh(&dm, m).map_err(err("copy out"))?;
        s.memcpy_dtoh(&dv, v).map_err(err("copy out"))?;
        Ok(())
    }
}
