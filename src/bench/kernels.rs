//! `mrgan bench kernels` (feature `cuda`): every conv layer of unet_256, resnet_9blocks and
//! the PatchGAN at 256 x 256, of CycleGAN's two networks at BraTS's 240 x 240 and (batch 1
//! only) of the volumetric CycleGAN's two on its 128x128x64 patch, per conv kernel (fprop,
//! dgrad, wgrad; direct and tiled) and batch size, the batch and instance norms (fused with
//! their activation) and fused Adam, on the GPU. Tiled kernels run as the backend plans
//! them and, in rows marked `@shape`, in each other tile shape; on the floor's shape
//! (`kernel_table::floor_geometry`) also each suited shape in 1 to `FLOOR_SWEEP_SPLITS` K
//! splits and every launch autotuning would try
//! (`@tiles/splits`): the data for checking `TiledLaunch::plan`'s cost model.
//! Reference peaks are measured in the same run: a large device-to-device copy (bandwidth)
//! and a dense 4096^3 GEMM through the convs' own large tiles (compute: what the tiles reach
//! without the im2col gather, so a conv's `% peak` is what its gather and shape cost).

use super::kernel_table::{KernelRow, Peaks, floor_geometry, fp32_peak_gflops};
use super::layers::{self, ConvLayer};
use crate::device::cuda::{ConvKernel, CudaBackend, CudaResult};
use crate::device::tiled_conv::{GemmSize, TileShape, TiledLaunch};
use crate::ops::conv::ConvGeometry;
use std::sync::Arc;

/// The device's nominal fp32 peak (`kernel_table::fp32_peak_gflops`), from its attributes.
fn fp32_peak(gpu: &CudaBackend) -> Option<f64> {
    use cudarc::driver::sys::CUdevice_attribute as Attribute;
    let get = |which| gpu.attribute(which);
    fp32_peak_gflops(
        get(Attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        get(Attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?,
        (
            get(Attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            get(Attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
    )
}

/// One conv kernel timed on a layer: its launch (tiled kernels) and its name in the table.
struct ConvVariant {
    kernel: ConvKernel,
    launch: Option<TiledLaunch>,
    name: String,
    /// A tiled kernel as the backend plans it.
    planned: bool,
    /// Timed for the floor's split sweep only (`KernelRow::sweep`).
    sweep: bool,
}

/// K splits the floor's shape is timed in, in each suited tile shape.
const FLOOR_SWEEP_SPLITS: usize = 16;

/// What `bench kernels` times on a layer: every kernel that applies as planned (the thin
/// ones on thin convs: `fprop-thin`), then each tiled one in the tile shapes not planned
/// (`fprop-tiled@128x128`), and on the floor's shape the split sweep and the autotuning
/// candidates (`fprop-tiled@128x128/8`).
fn conv_variants(gpu: &CudaBackend, g: &ConvGeometry) -> Vec<ConvVariant> {
    let mut variants: Vec<ConvVariant> = ConvKernel::ALL
        .into_iter()
        .filter(|kernel| kernel.applies(g))
        .map(|kernel| ConvVariant {
            kernel,
            launch: kernel.tiled().then(|| gpu.tiled_launch(kernel, g, None)),
            name: kernel.name().to_string(),
            planned: kernel.tiled(),
            sweep: false,
        })
        .collect();
    for kernel in ConvKernel::ALL.into_iter().filter(|k| k.tiled()) {
        let planned = gpu.tiled_launch(kernel, g, None);
        for shape in TileShape::ALL.into_iter().filter(|&s| s != planned.shape) {
            let (r, c) = shape.size();
            variants.push(ConvVariant {
                kernel,
                launch: Some(gpu.tiled_launch(kernel, g, Some(shape))),
                name: format!("{}@{r}x{c}", kernel.name()),
                planned: false,
                sweep: false,
            });
        }
        if *g == floor_geometry() {
            let gemm = kernel.pass().gemm(g);
            let sweep = TileShape::suited(gemm).into_iter().flat_map(|shape| {
                (1..=FLOOR_SWEEP_SPLITS).map(move |s| TiledLaunch::with_splits(gemm, shape, s))
            });
            for launch in sweep.chain(gpu.autotune_candidates(kernel, g)) {
                if !variants
                    .iter()
                    .any(|v| v.kernel == kernel && v.launch == Some(launch))
                {
                    variants.push(ConvVariant {
                        kernel,
                        launch: Some(launch),
                        name: format!("{}@{}", kernel.name(), launch.label()),
                        planned: false,
                        sweep: true,
                    });
                }
            }
        }
    }
    variants
}

/// A memory-bound kernel's row: `bytes` moved in `ms`.
fn memory_row(kernel: String, batch: usize, ms: f64, bytes: f64) -> KernelRow {
    KernelRow {
        kernel,
        batch,
        ms,
        rate: bytes / (ms * 1e-3) / 1e9,
        unit: "GB/s",
        geometry: None,
        launch: None,
        pass: None,
        planned_tiles: false,
        sweep: false,
    }
}

/// The dense GEMM's size (M = N = K).
const GEMM_SIZE: usize = 4096;

/// The norms `run` times: name, channels, side of the square plane, instance (true) or
/// batch norm.
const NORMS: [(&str, usize, usize, bool); 5] = [
    ("instance norm resnet 64x256x256", 64, 256, true),
    ("instance norm resnet 128x128x128", 128, 128, true),
    ("instance norm resnet 256x64x64", 256, 64, true),
    ("batch norm unet 128x64x64", 128, 64, false),
    ("batch norm unet 512x16x16", 512, 16, false),
];
/// Adam's row.
const ADAM: &str = "adam unet_256 arena";

/// Runs the table; `progress` is told each finished measurement. With `only`, just the conv
/// layers, norms and Adam whose name contains it (the peaks are measured anyway); a text
/// that names nothing is an error.
pub fn run(
    gpu: &Arc<CudaBackend>,
    batches: &[usize],
    reps: usize,
    only: Option<&str>,
    mut progress: impl FnMut(&KernelRow),
) -> CudaResult<(Vec<KernelRow>, Peaks)> {
    let all: Vec<ConvLayer> = [
        layers::unet_256(),
        layers::resnet_9blocks(),
        layers::patchgan(),
        layers::resnet_9blocks_240(),
        layers::patchgan_240(),
        layers::resnet3d_9blocks(),
        layers::patchgan3d(),
    ]
    .concat();
    let keep = |name: &str| only.is_none_or(|o| name.contains(o));
    let layer_name = |l: &ConvLayer| format!("{} {}", l.net, l.name);
    let names = all
        .iter()
        .map(layer_name)
        .chain(NORMS.iter().map(|n| n.0.to_string()));
    if !names.chain([ADAM.to_string()]).any(|n| keep(&n)) {
        return Err(format!(
            "--only {:?}: no layer or kernel name contains it (names look like \"resnet_9blocks block (x18)\", \"instance norm resnet 64x256x256\", \"{ADAM}\")",
            only.unwrap_or_default()
        ));
    }
    let mut rows = Vec::new();
    let bandwidth = gpu.copy_bandwidth(1 << 30, reps)?;
    let gemm_ms = gpu.time_gemm(GEMM_SIZE, reps)?;
    let gemm = KernelRow {
        kernel: format!("gemm {GEMM_SIZE}^3 (the convs' 128x128 tiles)"),
        batch: 1,
        ms: gemm_ms,
        rate: 2.0 * (GEMM_SIZE as f64).powi(3) / (gemm_ms * 1e-3) / 1e9,
        unit: "GFLOP/s",
        geometry: None,
        launch: Some(TiledLaunch::with_splits(
            GemmSize {
                rows: GEMM_SIZE,
                columns: GEMM_SIZE,
                depth: GEMM_SIZE,
            },
            TileShape::Large,
            1,
        )),
        pass: None,
        planned_tiles: false,
        sweep: false,
    };
    let peaks = Peaks {
        bandwidth,
        gemm: gemm.rate,
        fp32: fp32_peak(gpu),
    };
    progress(&gemm);
    rows.push(gemm);
    for &batch in batches {
        // The volumetric layers at batch 1 only: one 128x128x64 patch holds as many
        // positions as 64 slices of 128 x 128 (and the 3D CycleGAN trains at batch 1 or 2).
        let timed = |l: &&ConvLayer| keep(&layer_name(l)) && (batch == 1 || l.depth.is_none());
        for layer in all.iter().filter(timed) {
            let g = layer.geometry(batch);
            let variants = conv_variants(gpu, &g);
            let launches: Vec<_> = variants.iter().map(|v| (v.kernel, v.launch)).collect();
            let times = gpu.time_conv(&g, &launches, reps)?;
            for (variant, ms) in variants.into_iter().zip(times) {
                let (kernel, name) = (variant.kernel, variant.name);
                let row = KernelRow {
                    kernel: format!("{} {name}", layer_name(layer)),
                    batch,
                    ms,
                    rate: 2.0 * g.macs() as f64 / (ms * 1e-3) / 1e9,
                    unit: "GFLOP/s",
                    geometry: Some(g),
                    launch: variant.launch,
                    pass: Some(kernel.pass()),
                    planned_tiles: variant.planned,
                    sweep: variant.sweep,
                };
                progress(&row);
                rows.push(row);
            }
            // The fold of dY before a dgrad that pads with reflection or replication, which
            // the direct and tiled dgrad rows include: its own time, to tell it from the GEMM's.
            if let Some((ms, bytes)) = gpu.time_fold_dy(&g, reps)? {
                let name = format!("{} dgrad fold dY", layer_name(layer));
                let row = memory_row(name, batch, ms, bytes as f64);
                progress(&row);
                rows.push(row);
            }
        }
    }
    // Norms fused with LeakyReLU(0.2), at the networks' shapes: forward reads x three times
    // (two statistics passes, apply) and writes y, 16 bytes an element; backward reads dy, y
    // and x twice (gradient sums, dx) and writes dx, 28 bytes an element.
    for &batch in batches {
        for (name, c, side, per_sample) in NORMS.into_iter().filter(|n| keep(n.0)) {
            let elements = batch * c * side * side;
            let (forward, backward) = gpu.time_norm((batch, c, side * side), per_sample, reps)?;
            for (pass, ms, bytes) in [("forward", forward, 16.0), ("backward", backward, 28.0)] {
                let row = memory_row(format!("{name} {pass}"), batch, ms, bytes * elements as f64);
                progress(&row);
                rows.push(row);
            }
        }
    }
    if !keep(ADAM) {
        return Ok((rows, peaks));
    }
    // Adam over unet_256's 54.4 M parameters: reads p, g, m, v and writes p, m, v.
    let n = 54_407_809;
    let ms = gpu.time_adam(n, reps)?;
    let row = memory_row(ADAM.into(), 1, ms, 28.0 * n as f64);
    progress(&row);
    rows.push(row);
    Ok((rows, peaks))
}
