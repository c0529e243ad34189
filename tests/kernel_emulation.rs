//! The CUDA kernels' logic checked without a GPU: `tests/emulation/` compiles every
//! `kernels/*.cu` (conv and the dense GEMM, norm, loss, pad, elementwise, reduce, concat,
//! adam) as C++20 for the host (a block's threads as fibers that switch at `__syncthreads`,
//! in alternating order: `tests/emulation/cuda_host.hpp`) and runs each kernel with the
//! launch shape the CUDA backend uses; the results are compared with the CPU ops. This
//! catches indexing, tiling and reduction bugs on every machine, and a missing
//! `__syncthreads` before a read of shared memory (removing the first barrier of the norms'
//! block sum fails `emulated_norm_kernels_match_the_cpu`); the device's own behaviour
//! (memory model, warps, speed) is still for `tests/cuda_parity.rs` on a GPU.
//! Skips, saying why, when there is no C++ compiler; a kernel or driver that does not compile
//! as C++20 fails.
//!
//! Tolerance: the host evaluates the same f32 sums in the kernels' order, the CPU op in its
//! GEMM's order: 1e-4 of the output's largest magnitude (conv sums of up to 576 terms of
//! +-3; norm block trees over up to 3,003 elements against the CPU's sequential sums).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mrgan::device::conv_params::ConvParams;
use mrgan::device::kernel_codes;
use mrgan::ops::conv::ConvGeometry;
use mrgan::ops::conv::cpu as conv;

/// A scratch folder with the emulated kernels built in it; removed when dropped.
struct Emulation {
    dir: PathBuf,
}

impl Emulation {
    fn new(name: &str) -> Emulation {
        let dir = std::env::temp_dir().join(format!(
            "mrgan-kernel-emulation-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Emulation { dir }
    }

    /// Builds `tests/emulation/<driver>.cpp`; Err (skip) only when there is no C++ compiler:
    /// a driver or kernel that does not compile fails the test.
    fn build(&self, driver: &str) -> Result<PathBuf, String> {
        let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/emulation")
            .join(format!("{driver}.cpp"));
        let exe = self.dir.join(driver);
        let out = Command::new(&compiler)
            .args(["-std=c++20", "-O1", "-pthread", "-Wno-unknown-pragmas"])
            .arg(&source)
            .arg("-o")
            .arg(&exe)
            .output()
            .map_err(|e| format!("no C++ compiler `{compiler}`: {e}"))?;
        assert!(
            out.status.success(),
            "`{compiler}` could not build {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(exe)
    }

    /// Runs a built driver on `input` bytes and returns the floats it wrote.
    fn run(&self, exe: &Path, input: &[u8], what: &str) -> Vec<f32> {
        let (in_path, out_path) = (self.dir.join("in.bin"), self.dir.join("out.bin"));
        std::fs::write(&in_path, input).unwrap();
        let status = Command::new(exe)
            .arg(&in_path)
            .arg(&out_path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "{what}: emulated kernels failed: {status}"
        );
        bytemuck::pod_collect_to_vec(&std::fs::read(&out_path).unwrap())
    }
}

impl Drop for Emulation {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Builds a driver, or prints why the test is skipped.
macro_rules! driver_or_skip {
    ($emulation:expr, $driver:expr) => {
        match $emulation.build($driver) {
            Ok(exe) => exe,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}

/// The kernels' ConvParams as the backend passes them, in 4-byte words.
fn params(g: &ConvGeometry) -> Vec<i32> {
    let p = ConvParams::of(g).expect("test geometries fit 32-bit indexing");
    bytemuck::cast_slice(std::slice::from_ref(&p)).to_vec()
}

/// `got` all written and within 1e-4 of `want`'s largest magnitude.
fn check(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite output (an element the kernel did not write?)"
    );
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    println!("{what}: max abs error {worst:.2e} (scale {scale:.2e})");
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max abs error {worst} > {}",
        1e-4 * scale
    );
}

/// Tiled launches per pass: as planned for GPUs of one and of 32 multiprocessors (the test
/// asserts below that these cover every tile shape, split and unsplit).
const PLAN_MULTIPROCESSORS: [usize; 2] = [1, 32];
/// And in stream K for GPUs of one and of five multiprocessors (2 and 10 blocks: shares that
/// cross tiles, and tiles with several contributors).
const STREAM_K_MULTIPROCESSORS: [usize; 2] = [1, 5];

#[test]
fn emulated_conv_kernels_match_the_cpu() {
    use mrgan::device::tiled_conv::{ConvPass, TileShape, TiledLaunch, dgrad_folds_padding};
    use mrgan::ops::pad::PadMode;
    let emulation = Emulation::new("conv");
    let driver = driver_or_skip!(emulation, "conv_driver");
    let passes = [ConvPass::Fprop, ConvPass::Dgrad, ConvPass::Wgrad];
    let mut launches = std::collections::HashMap::new();
    // The kernels' own padding: zeros, or reflection and replication where dgrad folds it
    // (the backend pads the other cases explicitly, tests/cuda_parity.rs).
    let geometries = common::conv_test_geometries();
    let in_kernel = |g: &&ConvGeometry| g.pad_mode == PadMode::Zero || dgrad_folds_padding(g);
    for (k, g) in geometries.iter().enumerate().filter(|(_, g)| in_kernel(g)) {
        let x = common::kernel_test_values(g.input_shape().numel(), 20 + k as u64);
        let w = common::kernel_test_values(g.weight_shape().numel(), 30 + k as u64);
        let dy = common::kernel_test_values(g.output_shape().numel(), 40 + k as u64);
        let mut header = params(g);
        let per_pass = PLAN_MULTIPROCESSORS.len() + STREAM_K_MULTIPROCESSORS.len();
        header.push(per_pass as i32);
        let mut plans = Vec::new();
        for pass in passes {
            let gemm = pass.gemm(g);
            let planned = PLAN_MULTIPROCESSORS.map(|m| TiledLaunch::plan(gemm, m));
            let stream_k = STREAM_K_MULTIPROCESSORS.map(|m| TiledLaunch::stream_k(gemm, m));
            for plan in planned.into_iter().chain(stream_k) {
                let (gx, gy, gz) = plan.grid;
                let kernel = match (plan.shape, plan.stream_k) {
                    (_, true) => 3,
                    (TileShape::Square, _) => 0,
                    (TileShape::Large, _) => 1,
                    (TileShape::Narrow, _) => 2,
                };
                // The split sum after the launch runs over `splits` slots: z for split K.
                let z = if plan.stream_k {
                    plan.splits as u32
                } else {
                    gz
                };
                header.extend([kernel, gx as i32, gy as i32, z as i32]);
                header.push(plan.k_chunk as i32);
                let kind = (plan.shape, plan.splits > 1, plan.stream_k);
                *launches.entry(kind).or_insert(0) += 1;
                plans.push(plan);
            }
        }
        let mut input: Vec<u8> = bytemuck::cast_slice(&header).to_vec();
        for v in [&x, &w, &dy] {
            input.extend_from_slice(bytemuck::cast_slice(v));
        }
        let out = emulation.run(&driver, &input, &format!("conv case {k}"));
        let mut want = vec![0.0; dy.len()];
        conv::fprop(&x, &w, g, &mut want);
        let mut want_dx = vec![0.0; x.len()];
        conv::dgrad(&dy, &w, g, &mut want_dx);
        let mut want_dw = vec![0.0; w.len()];
        conv::wgrad(&x, &dy, g, &mut want_dw);
        // The driver writes each primitive's direct result, then each planned tiled one.
        let mut rest = &out[..];
        let mut plans = plans.iter();
        for (name, want) in [("fprop", &want), ("dgrad", &want_dx), ("wgrad", &want_dw)] {
            let (got, tail) = rest.split_at(want.len());
            check(&format!("case {k} {name}"), got, want);
            rest = tail;
            for _ in 0..per_pass {
                let plan = plans.next().unwrap();
                let (got, tail) = rest.split_at(want.len());
                let what = format!("case {k} {name}-tiled {}", plan.label());
                check(&what, got, want);
                rest = tail;
            }
        }
        assert!(rest.is_empty(), "case {k}: driver wrote extra values");
    }
    // Every tile shape, split K with square and narrow tiles, and stream K with tiles of
    // several contributors.
    for kind in [
        (TileShape::Square, false, false),
        (TileShape::Square, true, false),
        (TileShape::Large, false, false),
        (TileShape::Narrow, false, false),
        (TileShape::Narrow, true, false),
        (TileShape::Large, true, true),
    ] {
        assert!(
            launches.get(&kind).is_some_and(|&n| n >= 1),
            "the test shapes must exercise {kind:?} (launches: {launches:?})"
        );
    }
}

/// Batch and instance norm: statistics, apply, gradient sums and backward (batch and fixed
/// statistics), on sizes below, at and far above the 256-thread block, each reduced in one
/// part per group and in parts of 100 elements (several per group, crossing samples in batch
/// norm, merged per group).
#[test]
fn emulated_norm_kernels_match_the_cpu() {
    use mrgan::ops::elementwise::Activation;
    use mrgan::ops::norm::cpu::{
        GroupStats, NormLayout, StatsOver, moments, normalize, normalize_backward,
    };
    let emulation = Emulation::new("norm");
    let driver = driver_or_skip!(emulation, "norm_driver");
    let eps = 1e-5f32;
    for (k, (n, c, s), part) in [(2usize, 3usize, 35usize), (3, 5, 256), (1, 4, 1001)]
        .into_iter()
        .enumerate()
        .flat_map(|(k, shape)| [(k, shape, 1 << 20), (k, shape, 100)])
    {
        let l = NormLayout { n, c, spatial: s };
        let [x, dy, gamma, beta] = common::norm_test_inputs(k, n, c, s);
        for (over, per_sample) in [(StatsOver::Batch, 0), (StatsOver::Instance, 1)] {
            for (batch_stats, act) in [
                (1, None),
                (0, None),
                (1, Some(Activation::LeakyRelu(0.2))),
                (0, Some(Activation::Tanh)),
            ] {
                let what =
                    format!("norm case {k} part {part} {over:?} batch_stats {batch_stats} {act:?}");
                let (kind, slope) = kernel_codes::activation(act);
                let header = [n, c, s].map(|v| v as i32);
                let mut input: Vec<u8> = bytemuck::cast_slice(&header).to_vec();
                input.extend_from_slice(bytemuck::cast_slice(&[per_sample, batch_stats, part]));
                input.extend_from_slice(bytemuck::bytes_of(&eps));
                input.extend_from_slice(bytemuck::bytes_of(&kind));
                input.extend_from_slice(bytemuck::bytes_of(&slope));
                for v in [&x, &dy, &gamma, &beta] {
                    input.extend_from_slice(bytemuck::cast_slice(v));
                }
                let out = emulation.run(&driver, &input, &what);
                let groups = if per_sample == 1 { n * c } else { c };
                let (mean, rest) = out.split_at(groups);
                let (var, rest) = rest.split_at(groups);
                let (_invstd, rest) = rest.split_at(groups);
                let (y, rest) = rest.split_at(x.len());
                let (sums, dx) = rest.split_at(2 * groups);

                let (want_mean, want_var) = moments(&x, l, over);
                let invstd: Vec<f32> = want_var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
                let stats = GroupStats {
                    mean: &want_mean,
                    invstd: &invstd,
                };
                check(&format!("{what} mean"), mean, &want_mean);
                check(&format!("{what} var"), var, &want_var);
                let mut z = vec![0.0; x.len()];
                normalize(&x, l, over, stats, Some(&gamma), Some(&beta), &mut z);
                // The fused activation's output, and the gradient reaching the norm through it.
                let (want_y, dz) = common::fused_activation(&z, &dy, act);
                check(&format!("{what} y"), y, &want_y);
                let mut want_dx = vec![0.0; x.len()];
                let (want_dgamma, want_dbeta) = normalize_backward(
                    &dz,
                    &x,
                    l,
                    over,
                    stats,
                    Some(&gamma),
                    batch_stats == 1,
                    Some(&mut want_dx),
                );
                check(&format!("{what} dx"), dx, &want_dx);
                // Per-group sums fold into per-channel dbeta / dgamma as the backend does.
                let (mut dgamma, mut dbeta) = (vec![0.0f32; c], vec![0.0f32; c]);
                for g in 0..groups {
                    dbeta[g % c] += sums[2 * g];
                    dgamma[g % c] += sums[2 * g + 1];
                }
                check(&format!("{what} dgamma"), &dgamma, &want_dgamma);
                check(&format!("{what} dbeta"), &dbeta, &want_dbeta);
            }
        }
    }
}

/// Losses (L1, MSE, BCE-with-logits) against a tensor or a constant label: the mean from the
/// blocks' double partial sums (1e-6 relative to the CPU's f64 mean: the kernel evaluates
/// each term in f32) and both gradients (1e-4 of the largest, as above).
#[test]
fn emulated_loss_kernels_match_the_cpu() {
    use mrgan::ops::loss::cpu::{LossKind, Target, loss, loss_backward};
    let emulation = Emulation::new("loss");
    let driver = driver_or_skip!(emulation, "loss_driver");
    let gy = 1.7f32;
    for n in [1usize, 900, 25_001] {
        let p = common::kernel_test_values(n, 90);
        let t = common::kernel_test_values(n, 91);
        let p64: Vec<f64> = p.iter().map(|&v| v as f64).collect();
        let t64: Vec<f64> = t.iter().map(|&v| v as f64).collect();
        for kind in [LossKind::L1, LossKind::Mse, LossKind::BceWithLogits] {
            let code = kernel_codes::loss(kind);
            for (with_target, constant) in [(true, 0.0f32), (false, 1.0), (false, 0.0)] {
                let what = format!("loss {kind:?} n={n} target {with_target} label {constant}");
                let mut input: Vec<u8> = bytemuck::cast_slice(&[code, with_target as i32]).to_vec();
                input.extend_from_slice(bytemuck::bytes_of(&(n as i64)));
                input.extend_from_slice(bytemuck::cast_slice(&[constant, gy / n as f32]));
                input.extend_from_slice(bytemuck::cast_slice(&p));
                input.extend_from_slice(bytemuck::cast_slice(&t));
                let out = emulation.run(&driver, &input, &what);
                let mean: f64 = bytemuck::cast([out[0], out[1]]);
                let (dpred, dtarget) = out[2..].split_at(n);

                let target64 = if with_target {
                    Target::Values(&t64[..])
                } else {
                    Target::Const(constant as f64)
                };
                let want = loss(kind, &p64, target64);
                assert!(
                    (mean - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{what}: mean {mean} vs {want}"
                );
                let target = if with_target {
                    Target::Values(&t[..])
                } else {
                    Target::Const(constant)
                };
                let (mut want_dp, mut want_dt) = (vec![0.0f32; n], vec![0.0f32; n]);
                let dt_out = with_target.then_some(&mut want_dt[..]);
                loss_backward(kind, &p, target, gy, &mut want_dp, dt_out);
                check(&format!("{what} dpred"), dpred, &want_dp);
                if with_target {
                    check(&format!("{what} dtarget"), dtarget, &want_dt);
                }
            }
        }
    }
}

/// Zero, reflection and replication padding, forward gather and the deterministic backward
/// gather, on `common::pad_test_geometries`. Sums of at most 8 terms: 1e-4 of the largest.
#[test]
fn emulated_pad_kernels_match_the_cpu() {
    use mrgan::ops::pad::PadMode;
    use mrgan::ops::pad::cpu::{pad_backward, pad_forward};
    let emulation = Emulation::new("pad");
    let driver = driver_or_skip!(emulation, "pad_driver");
    for (k, (g, reflect_ok)) in common::pad_test_geometries().into_iter().enumerate() {
        let in_len = g.planes * g.input.iter().product::<usize>();
        let out_len = g.planes * g.output().iter().product::<usize>();
        let x = common::kernel_test_values(in_len, 100 + k as u64);
        let dy = common::kernel_test_values(out_len, 110 + k as u64);
        for mode in [PadMode::Zero, PadMode::Reflect, PadMode::Replicate] {
            if mode == PadMode::Reflect && !reflect_ok {
                continue;
            }
            let what = format!("pad case {k} {mode:?}");
            // PadParams: planes, input[3], before[3], after[3], mode.
            let mut params = vec![g.planes as i32];
            params.extend(g.input.map(|v| v as i32));
            params.extend(g.pads.map(|p| p[0] as i32));
            params.extend(g.pads.map(|p| p[1] as i32));
            params.push(kernel_codes::pad(mode));
            let mut input: Vec<u8> = bytemuck::cast_slice(&params).to_vec();
            input.extend_from_slice(bytemuck::cast_slice(&x));
            input.extend_from_slice(bytemuck::cast_slice(&dy));
            let out = emulation.run(&driver, &input, &what);
            let (y, dx) = out.split_at(out_len);
            let mut want = vec![0.0; out_len];
            pad_forward(&x, &g, mode, &mut want);
            check(&format!("{what} forward"), y, &want);
            let mut want = vec![0.0; in_len];
            pad_backward(&dy, &g, mode, &mut want);
            check(&format!("{what} backward"), dx, &want);
        }
    }
}

/// Activations forward and backward (1e-4 of the largest: host tanhf / expf against Rust's)
/// and dropout, whose masks must equal the CPU's exactly (same counter-based hash).
#[test]
fn emulated_elementwise_kernels_match_the_cpu() {
    use mrgan::ops::elementwise::{Activation, cpu};
    let emulation = Emulation::new("elementwise");
    let driver = driver_or_skip!(emulation, "elementwise_driver");
    let acts = [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Tanh,
        Activation::Sigmoid,
    ];
    for (n, p, seed) in [
        (1usize, 0.5f64, 7u64),
        (255, 0.25, 1 << 40),
        (3001, 0.5, 99),
    ] {
        let x = common::kernel_test_values(n, 1);
        let dy = common::kernel_test_values(n, 2);
        for act in acts {
            let what = format!("{act:?} n={n}");
            let (code, slope) = kernel_codes::activation(Some(act));
            let mut input: Vec<u8> = bytemuck::bytes_of(&code).to_vec();
            input.extend_from_slice(bytemuck::cast_slice(&[slope, (1.0 / (1.0 - p)) as f32]));
            input.extend_from_slice(bytemuck::bytes_of(&p));
            input.extend_from_slice(bytemuck::bytes_of(&seed));
            input.extend_from_slice(bytemuck::bytes_of(&(n as u32)));
            input.extend_from_slice(bytemuck::cast_slice(&x));
            input.extend_from_slice(bytemuck::cast_slice(&dy));
            let out = emulation.run(&driver, &input, &what);
            let (y, rest) = out.split_at(n);
            let (dx, dropped) = rest.split_at(n);
            let mut want = vec![0.0; n];
            cpu::activate(&x, act, &mut want);
            check(&format!("{what} forward"), y, &want);
            let mut want_dx = vec![0.0; n];
            cpu::activate_backward(&dy, &x, &want, act, &mut want_dx);
            check(&format!("{what} backward"), dx, &want_dx);
            let mut want_dropped = vec![0.0; n];
            cpu::dropout(&x, p, seed, &mut want_dropped);
            assert_eq!(
                dropped,
                &want_dropped[..],
                "dropout n={n} p={p} seed={seed}"
            );
        }
    }
}

/// The dense GEMM through the convs' large and square tiles (the compute peak of `bench
/// kernels`, and the thin convs' first step).
#[test]
fn emulated_gemm_kernel_matches_a_reference() {
    let emulation = Emulation::new("gemm");
    let driver = driver_or_skip!(emulation, "gemm_driver");
    for (k, (m, n, depth)) in common::GEMM_TEST_SIZES.into_iter().enumerate() {
        let a = common::kernel_test_values(m * depth, 50 + k as u64);
        let b = common::kernel_test_values(depth * n, 60 + k as u64);
        let mut input: Vec<u8> = bytemuck::cast_slice(&[m as i32, n as i32, depth as i32]).to_vec();
        input.extend_from_slice(bytemuck::cast_slice(&a));
        input.extend_from_slice(bytemuck::cast_slice(&b));
        let got = emulation.run(&driver, &input, &format!("gemm {m}x{n}x{depth}"));
        let want = common::reference_gemm((m, n, depth), &a, &b);
        let (large, square) = got.split_at(want.len());
        check(
            &format!("gemm {m}x{n}x{depth} in 128x128 tiles"),
            large,
            &want,
        );
        check(
            &format!("gemm {m}x{n}x{depth} in 64x64 tiles"),
            square,
            &want,
        );
    }
}

/// Add, mul and scale, the whole-tensor sum and its fill backward, and channel concat / split
/// with three parts (the U-Net's skips are two; pix2pix's D input is two).
#[test]
fn emulated_plumbing_kernels_match_the_cpu() {
    use mrgan::ops::concat::{concat_channels, split_channels};
    let emulation = Emulation::new("plumbing");
    let driver = driver_or_skip!(emulation, "plumbing_driver");
    let (images, spatial, channels) = (2usize, 601usize, [3usize, 5, 1]);
    for n in [1usize, 1000, 3001] {
        let (a, b) = (
            common::kernel_test_values(n, 5),
            common::kernel_test_values(n, 6),
        );
        let parts = common::concat_test_parts(images, spatial, &channels);
        let (factor, value) = (-0.75f32, 0.125f32);
        let mut input: Vec<u8> = bytemuck::bytes_of(&(n as u32)).to_vec();
        input.extend_from_slice(bytemuck::cast_slice(&[factor, value]));
        input.extend_from_slice(bytemuck::cast_slice(&a));
        input.extend_from_slice(bytemuck::cast_slice(&b));
        let header = [images, spatial, channels.len()].map(|v| v as i32);
        input.extend_from_slice(bytemuck::cast_slice(&header));
        input.extend_from_slice(bytemuck::cast_slice(&channels.map(|c| c as i32)));
        for part in &parts {
            input.extend_from_slice(bytemuck::cast_slice(part));
        }
        let out = emulation.run(&driver, &input, &format!("plumbing n={n}"));
        let (add, rest) = out.split_at(n);
        let (mul, rest) = rest.split_at(n);
        let (scaled, rest) = rest.split_at(n);
        let (sum, rest) = rest.split_at(2);
        let (filled, mut rest) = rest.split_at(n);
        let zip = |f: fn(f32, f32) -> f32| -> Vec<f32> {
            a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect()
        };
        check(&format!("add n={n}"), add, &zip(|x, y| x + y));
        check(&format!("mul n={n}"), mul, &zip(|x, y| x * y));
        let want_scaled: Vec<f32> = a.iter().map(|v| factor * v).collect();
        check(&format!("scale n={n}"), scaled, &want_scaled);
        let sum: f64 = bytemuck::cast([sum[0], sum[1]]);
        let want_sum = mrgan::ops::reduce::sum(
            &mrgan::Tensor::from_vec(mrgan::Shape::new(&[n]), a.clone()).unwrap(),
        )
        .unwrap();
        assert!(
            (sum as f32 - want_sum).abs() <= 1e-6 * want_sum.abs().max(1.0),
            "sum n={n}: {sum} vs {want_sum}"
        );
        check(&format!("fill n={n}"), filled, &vec![value; n]);
        let refs: Vec<(&[f32], usize)> = parts
            .iter()
            .zip(channels)
            .map(|(p, c)| (&p[..], c))
            .collect();
        let mut want_whole = vec![0.0; images * 9 * spatial];
        concat_channels(&refs, images, spatial, &mut want_whole);
        let (whole, tail) = rest.split_at(want_whole.len());
        assert_eq!(whole, &want_whole[..], "concat n={n}");
        rest = tail;
        for index in 0..channels.len() {
            let want = split_channels(&want_whole, &channels, index, images, spatial);
            let (got, tail) = rest.split_at(want.len());
            assert_eq!(got, &want[..], "split part {index}");
            rest = tail;
        }
        assert!(rest.is_empty(), "plumbing n={n}: driver wrote extra values");
    }
}

/// Fused Adam (weight decay, bias corrections) for 5 steps against the CPU optimizer:
/// the same f32 formula, 1e-7 absolute + 1e-6 relative as in the GPU parity test.
#[test]
fn emulated_adam_kernel_matches_the_cpu() {
    let emulation = Emulation::new("adam");
    let driver = driver_or_skip!(emulation, "adam_driver");
    let n = 3001;
    let common::AdamTrajectory {
        start,
        config: cfg,
        steps: trajectory,
    } = common::cpu_adam_trajectory(n, 5);
    let (mut p, mut m, mut v) = (start, vec![0.0f32; n], vec![0.0f32; n]);
    for (t, (g, want)) in (1..).zip(&trajectory) {
        // Scalars as CudaBackend::adam_step computes them.
        let step_size = (cfg.lr / (1.0 - cfg.beta1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - cfg.beta2.powi(t)).sqrt() as f32;
        let scalars = [
            cfg.beta1 as f32,
            cfg.beta2 as f32,
            cfg.eps as f32,
            cfg.weight_decay as f32,
            step_size,
            bc2_sqrt,
        ];
        let mut input: Vec<u8> = bytemuck::bytes_of(&(n as u32)).to_vec();
        input.extend_from_slice(bytemuck::cast_slice(&scalars));
        for a in [&p, g, &m, &v] {
            input.extend_from_slice(bytemuck::cast_slice(a));
        }
        let out = emulation.run(&driver, &input, &format!("Adam step {t}"));
        p = out[..n].to_vec();
        m = out[n..2 * n].to_vec();
        v = out[2 * n..].to_vec();
        for (i, (got, want)) in p.iter().zip(want).enumerate() {
            assert!(
                (got - want).abs() <= 1e-7 + 1e-6 * want.abs(),
                "Adam step {t} element {i}: {got} vs {want}"
            );
        }
    }
}
