//! The CUDA runtime (feature `cuda`): libcuda loaded at run time through cudarc, one context
//! and stream, the embedded kernel modules (the device's own cubin when there is one, else
//! the compute_80 PTX), function handles resolved once, a caching pool for scratch buffers
//! (`super::pool`), and typed launch wrappers, one file per kernel family (`conv`, `norm`,
//! `elementwise`, `loss`, `pad`, `adam`, `reduce`, `concat`, `window`, as `kernels/*.cu`).
//!
//! Each family's launchers work on `DeviceBuffer`s (`buffer`), the storage of device
//! tensors, which the ops call (`crate::ops::*`); a host-slice wrapper beside each (copy in,
//! launch, copy out) serves the parity tests (`tests/cuda_parity.rs`, run by
//! `scripts/gpu-check.sh`) and the kernel emulation (`tests/kernel_emulation.rs`) checks the
//! same kernels on the host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchArgs, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::pool::{Pool, PoolStats, RawAllocator};

mod adam;
mod buffer;
mod concat;
mod conv;
mod elementwise;
mod loss;
mod norm;
mod pad;
mod reduce;
mod window;

pub use buffer::DeviceBuffer;
pub use conv::{ConvKernel, TunedConv};
pub use window::WindowBox;

mod kernels {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// Why a CUDA call failed, as text for the user.
pub type CudaResult<T> = std::result::Result<T, String>;

fn err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

/// The kernels' function handles, resolved once.
struct Functions {
    pad_fwd: CudaFunction,
    pad_bwd: CudaFunction,
    loss_sums: CudaFunction,
    loss_backward: CudaFunction,
    norm_stats: CudaFunction,
    norm_stats_merge: CudaFunction,
    norm_sums_merge: CudaFunction,
    norm_apply: CudaFunction,
    norm_grad_sums: CudaFunction,
    norm_backward: CudaFunction,
    norm_channel_sums: CudaFunction,
    running_stats: CudaFunction,
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
    conv_fprop_large_streamk: CudaFunction,
    conv_dgrad_large_streamk: CudaFunction,
    conv_wgrad_large_streamk: CudaFunction,
    conv_split_sum: CudaFunction,
    conv_fold_dy: CudaFunction,
    conv_reverse_taps: CudaFunction,
    conv_weight_panel: CudaFunction,
    conv_thin_gather: CudaFunction,
    gemm: CudaFunction,
    gemm_square: CudaFunction,
    winograd_weights: CudaFunction,
    winograd_input: CudaFunction,
    winograd_output: CudaFunction,
    winograd_wgrad_dy: CudaFunction,
    winograd_wgrad_x: CudaFunction,
    winograd_wgrad_out: CudaFunction,
    activation_fwd: CudaFunction,
    activation_bwd: CudaFunction,
    dropout: CudaFunction,
    binary: CudaFunction,
    scale: CudaFunction,
    sum_partial: CudaFunction,
    fill: CudaFunction,
    channel_slice_copy: CudaFunction,
    adam: CudaFunction,
    window_cut: CudaFunction,
    window_add: CudaFunction,
    window_blend: CudaFunction,
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

/// A launch for each tiled conv kernel and geometry met so far, as planned.
type ConvLaunches =
    HashMap<(ConvKernel, crate::ops::conv::ConvGeometry), crate::device::tiled_conv::TiledLaunch>;
/// What autotuning picked for each tiled conv kernel and geometry met so far.
type TunedConvs = HashMap<(ConvKernel, crate::ops::conv::ConvGeometry), TunedConv>;

/// One GPU with the engine's kernels loaded.
pub struct CudaBackend {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Scratch buffers (split-K partial sums), cached across launches.
    pool: Arc<Pool<StreamAllocator>>,
    /// The GPU's multiprocessors, which `TiledLaunch::plan` fills.
    multiprocessors: usize,
    /// Fill every new buffer with NaN, so that elements a kernel fails to write show
    /// (the parity tests switch it on).
    poison: AtomicBool,
    /// The planned launches worked out so far: `TiledLaunch::plan` searches every K split,
    /// a few microseconds that a training step would otherwise pay on every conv call.
    planned: Mutex<ConvLaunches>,
    /// Pick tiled conv launches by timing (`set_autotune`), and what was picked.
    autotune: AtomicBool,
    tuned: Mutex<TunedConvs>,
    functions: Functions,
    _modules: Vec<Arc<CudaModule>>,
}

/// A null device pointer, for a kernel operand that is absent: the norm kernels read it as
/// its identity value, the loss backward as "no target gradient wanted".
pub(super) const NULL: u64 = 0;

/// Pushes `p`, or a null pointer when it is absent.
fn arg_or_null<'a>(b: &mut LaunchArgs<'a>, p: Option<&'a DeviceBuffer>) {
    match p {
        Some(p) => b.arg(p.slice()),
        None => b.arg(&NULL),
    };
}

/// A launch over `planes` planes of `plane_len` elements for kernels that loop over planes
/// along y (at most 65,535 blocks, the rest by the kernels' loop) and over a plane's
/// elements along x, about 1,024 a block: index arithmetic within a plane stays 32-bit
/// (64-bit divisions cost several times more).
fn launch_planes(planes: usize, plane_len: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            plane_len.div_ceil(1024).clamp(1, 65535) as u32,
            planes.clamp(1, 65535) as u32,
            1,
        ),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// 1D launch over `n` elements: 256-thread blocks, grid-stride kernels.
fn launch_1d(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n.div_ceil(256)).clamp(1, 65535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
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
        let window = load("window", WINDOW_PTX, WINDOW_SM80, WINDOW_SM90)?;
        let f = |m: &Arc<CudaModule>, name: &str| m.load_function(name).map_err(err(name));
        let functions = Functions {
            pad_fwd: f(&pad, "pad_fwd_f32")?,
            pad_bwd: f(&pad, "pad_bwd_f32")?,
            loss_sums: f(&loss, "loss_partial_sums_f32")?,
            loss_backward: f(&loss, "loss_backward_f32")?,
            norm_stats: f(&norm, "norm_stats_f32")?,
            norm_stats_merge: f(&norm, "norm_stats_merge_f32")?,
            norm_sums_merge: f(&norm, "norm_sums_merge_f32")?,
            norm_apply: f(&norm, "norm_apply_f32")?,
            norm_grad_sums: f(&norm, "norm_grad_sums_f32")?,
            norm_backward: f(&norm, "norm_backward_f32")?,
            norm_channel_sums: f(&norm, "norm_channel_sums_f32")?,
            running_stats: f(&norm, "running_stats_f32")?,
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
            conv_fprop_large_streamk: f(&conv, "conv_fprop_large_streamk_f32")?,
            conv_dgrad_large_streamk: f(&conv, "conv_dgrad_large_streamk_f32")?,
            conv_wgrad_large_streamk: f(&conv, "conv_wgrad_large_streamk_f32")?,
            conv_split_sum: f(&conv, "conv_split_sum_f32")?,
            conv_fold_dy: f(&conv, "conv_fold_dy_f32")?,
            conv_reverse_taps: f(&conv, "conv_reverse_taps_f32")?,
            conv_weight_panel: f(&conv, "conv_weight_panel_f32")?,
            conv_thin_gather: f(&conv, "conv_thin_gather_f32")?,
            gemm: f(&conv, "gemm_f32")?,
            gemm_square: f(&conv, "gemm_square_f32")?,
            winograd_weights: f(&conv, "winograd_weights_f32")?,
            winograd_input: f(&conv, "winograd_input_f32")?,
            winograd_output: f(&conv, "winograd_output_f32")?,
            winograd_wgrad_dy: f(&conv, "winograd_wgrad_dy_f32")?,
            winograd_wgrad_x: f(&conv, "winograd_wgrad_x_f32")?,
            winograd_wgrad_out: f(&conv, "winograd_wgrad_out_f32")?,
            activation_fwd: f(&elementwise, "activation_fwd_f32")?,
            activation_bwd: f(&elementwise, "activation_bwd_f32")?,
            dropout: f(&elementwise, "dropout_f32")?,
            binary: f(&elementwise, "binary_f32")?,
            scale: f(&elementwise, "scale_f32")?,
            sum_partial: f(&reduce, "sum_partial_f32")?,
            fill: f(&reduce, "fill_f32")?,
            channel_slice_copy: f(&concat, "channel_slice_copy_f32")?,
            adam: f(&adam, "adam_step_f32")?,
            window_cut: f(&window, "window_cut_f32")?,
            window_add: f(&window, "window_add_f64")?,
            window_blend: f(&window, "window_blend_f32")?,
        };
        let stream = ctx.default_stream();
        let multiprocessors = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(err("multiprocessor count"))?;
        Ok(CudaBackend {
            ordinal,
            ctx,
            pool: Pool::new(StreamAllocator(Arc::clone(&stream))),
            stream,
            multiprocessors: multiprocessors.max(1) as usize,
            poison: AtomicBool::new(false),
            autotune: AtomicBool::new(false),
            planned: Mutex::new(HashMap::new()),
            tuned: Mutex::new(HashMap::new()),
            functions,
            _modules: vec![
                elementwise,
                adam,
                conv,
                norm,
                loss,
                pad,
                reduce,
                concat,
                window,
            ],
        })
    }

    /// GPU `ordinal`, opened once per process and shared: every tensor on it holds the
    /// same backend, so its buffers share one pool and one stream.
    pub fn shared(ordinal: usize) -> CudaResult<Arc<CudaBackend>> {
        static OPENED: Mutex<Option<HashMap<usize, Arc<CudaBackend>>>> = Mutex::new(None);
        let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
        let opened = opened.get_or_insert_with(HashMap::new);
        if let Some(b) = opened.get(&ordinal) {
            return Ok(Arc::clone(b));
        }
        let backend = Arc::new(CudaBackend::new(ordinal)?);
        opened.insert(ordinal, Arc::clone(&backend));
        Ok(backend)
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// From now on, every new buffer starts as NaNs (`on`), or as whatever its last user
    /// left (off, the default). The parity tests poison so that unwritten outputs fail.
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    /// Host data on the device.
    fn upload<T: DeviceRepr>(&self, v: &[T]) -> CudaResult<CudaSlice<T>> {
        self.stream.clone_htod(v).map_err(err("copy in"))
    }

    /// Device data back on the host (waits for the stream).
    fn download<T: DeviceRepr, S: DevicePtr<T>>(&self, d: &S) -> CudaResult<Vec<T>> {
        self.stream.clone_dtoh(d).map_err(err("copy out"))
    }

    /// A device attribute, or None where the driver does not give it.
    pub fn attribute(&self, which: cudarc::driver::sys::CUdevice_attribute) -> Option<i32> {
        self.ctx.attribute(which).ok()
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> String {
        self.ctx
            .name()
            .unwrap_or_else(|_| "unknown CUDA device".into())
    }

    /// What the backend's caching pool holds and has held (elements of f32). Every device
    /// tensor, arena and scratch buffer of the engine comes from this pool, so its peak is
    /// the device memory a run's buffers needed at most.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Starts a new pool peak from what the pool holds now.
    pub fn reset_pool_peak(&self) {
        self.pool.reset_peak()
    }

    /// Frees the pool's cached buffers (the device memory of buffers no longer in use).
    pub fn release_cached(&self) {
        self.pool.release_cached()
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

    /// Device-to-device copy bandwidth in GB/s (read + write bytes), the memory-bound peak.
    pub fn copy_bandwidth(&self, bytes: usize, reps: usize) -> CudaResult<f64> {
        let n = bytes / 4;
        let src = self.upload(&vec![1.0f32; n])?;
        let mut dst = self.stream.alloc_zeros::<f32>(n).map_err(err("alloc"))?;
        let ms = self.time_ms(reps, || {
            self.stream
                .memcpy_dtod(&src, &mut dst)
                .map_err(err("memcpy_dtod"))
        })?;
        Ok(2.0 * bytes as f64 / (ms * 1e-3) / 1e9)
    }
}
