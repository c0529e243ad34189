//! `mrgan bench kernels` (feature `cuda`): every conv layer of unet_256, resnet_9blocks and
//! the PatchGAN at 256 x 256, per conv kernel (fprop, dgrad, wgrad; direct and tiled) and batch
//! size, the batch and instance norms (fused with their activation) and fused Adam, on the
//! GPU. Tiled kernels run as the backend plans them and, in rows marked `@shape`, in each
//! other tile shape: the data for tuning `TiledLaunch::plan`.
//! Reference peaks are measured in the same run: a large device-to-device copy (bandwidth)
//! and a dense 4096^3 GEMM through the convs' own large tiles (compute: what the tiles reach
//! without the im2col gather, so a conv's `% peak` is what its gather and shape cost).

use super::kernel_table::{KernelRow, Peaks, fp32_peak_gflops};
use super::layers::{self, ConvLayer};
use crate::device::cuda::{ConvKernel, CudaBackend, CudaResult};
use crate::device::tiled_conv::TileShape;
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

/// The dense GEMM's size (M = N = K).
const GEMM_SIZE: usize = 4096;

/// Runs the table; `progress` is told each finished measurement.
pub fn run(
    gpu: &Arc<CudaBackend>,
    batches: &[usize],
    reps: usize,
    mut progress: impl FnMut(&KernelRow),
) -> CudaResult<(Vec<KernelRow>, Peaks)> {
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
        tiles: "128x128/1".into(),
        pass: None,
        planned_tiles: false,
    };
    let peaks = Peaks {
        bandwidth,
        gemm: gemm.rate,
        fp32: fp32_peak(gpu),
    };
    progress(&gemm);
    rows.push(gemm);
    let all: Vec<ConvLayer> = [
        layers::unet_256(),
        layers::resnet_9blocks(),
        layers::patchgan(),
    ]
    .concat();
    for &batch in batches {
        for layer in &all {
            let g = layer.geometry(batch);
            // Every kernel as planned, then each tiled one in the tile shapes not planned.
            let mut variants: Vec<(ConvKernel, Option<TileShape>)> =
                ConvKernel::ALL.iter().map(|&k| (k, None)).collect();
            for kernel in ConvKernel::ALL.into_iter().filter(|k| k.tiled()) {
                let planned = gpu.tiled_launch(kernel, &g, None).shape;
                variants.extend(
                    TileShape::ALL
                        .into_iter()
                        .filter(|&s| s != planned)
                        .map(|s| (kernel, Some(s))),
                );
            }
            let times = gpu.time_conv(&g, &variants, reps)?;
            for (&(kernel, shape), ms) in variants.iter().zip(times) {
                let name = match shape {
                    None => kernel.name().to_string(),
                    Some(s) => {
                        let (r, c) = s.size();
                        format!("{}@{r}x{c}", kernel.name())
                    }
                };
                let tiles = if kernel.tiled() {
                    gpu.tiled_launch(kernel, &g, shape).label()
                } else {
                    String::new()
                };
                let row = KernelRow {
                    kernel: format!("{} {} {name}", layer.net, layer.name),
                    batch,
                    ms,
                    rate: 2.0 * g.macs() as f64 / (ms * 1e-3) / 1e9,
                    unit: "GFLOP/s",
                    geometry: Some(g),
                    tiles,
                    pass: Some(kernel.pass()),
                    planned_tiles: kernel.tiled() && shape.is_none(),
                };
                progress(&row);
                rows.push(row);
            }
        }
    }
    // Norms fused with LeakyReLU(0.2), at the networks' shapes: forward reads x three times
    // (two statistics passes, apply) and writes y, 16 bytes an element; backward reads dy, y
    // and x twice (gradient sums, dx) and writes dx, 28 bytes an element.
    for &batch in batches {
        for (name, c, side, per_sample) in [
            ("instance norm resnet 64x256x256", 64, 256, true),
            ("instance norm resnet 128x128x128", 128, 128, true),
            ("instance norm resnet 256x64x64", 256, 64, true),
            ("batch norm unet 128x64x64", 128, 64, false),
            ("batch norm unet 512x16x16", 512, 16, false),
        ] {
            let elements = batch * c * side * side;
            let (forward, backward) = gpu.time_norm((batch, c, side * side), per_sample, reps)?;
            for (pass, ms, bytes) in [("forward", forward, 16.0), ("backward", backward, 28.0)] {
                let row = KernelRow {
                    kernel: format!("{name} {pass}"),
                    batch,
                    ms,
                    rate: bytes * elements as f64 / (ms * 1e-3) / 1e9,
                    unit: "GB/s",
                    geometry: None,
                    tiles: String::new(),
                    pass: None,
                    planned_tiles: false,
                };
                progress(&row);
                rows.push(row);
            }
        }
    }
    // Adam over unet_256's 54.4 M parameters: reads p, g, m, v and writes p, m, v.
    let n = 54_407_809;
    let ms = gpu.time_adam(n, reps)?;
    let row = KernelRow {
        kernel: "adam unet_256 arena".into(),
        batch: 1,
        ms,
        rate: 28.0 * n as f64 / (ms * 1e-3) / 1e9,
        unit: "GB/s",
        geometry: None,
        tiles: String::new(),
        pass: None,
        planned_tiles: false,
    };
    progress(&row);
    rows.push(row);
    Ok((rows, peaks))
}
