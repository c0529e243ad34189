//! CUDA kernels against the CPU ops (feature `cuda`). Every test needs a GPU: without one it
//! prints why and passes, so `scripts/gpu-check.sh` runs them on a GPU machine. Output
//! buffers start as NaN, so an element a kernel does not write fails.
//!
//! Tolerances: element-wise kernels compute the same f32 expression as the CPU, differing
//! only in the device's tanhf / expf (a few ulp): 1e-6 absolute + 1e-5 relative. Dropout
//! masks must be identical. Adam: same f32 formula, 1e-7 + 1e-6 relative over 5 steps.
#![cfg(feature = "cuda")]

mod common;

use std::sync::Arc;

use mrgan::Shape;
use mrgan::device::cuda::CudaBackend;
use mrgan::device::tiled_conv::ConvPass;
use mrgan::ops::elementwise::{Activation, cpu};
use mrgan::ops::pad::PadMode;

/// GPU 0 with poisoned allocations, or None (and why) without one.
fn gpu() -> Option<Arc<CudaBackend>> {
    match CudaBackend::shared(0) {
        Ok(b) => {
            println!("running on {}", b.name());
            b.set_poison(true);
            Some(b)
        }
        Err(why) => {
            common::gpu_missing(&why);
            None
        }
    }
}

fn close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        worst = worst.max(err);
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}: element {i}: {g} vs {w}"
        );
    }
    println!("{what}: max abs error {worst:.2e}");
}

#[test]
fn activations_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    for n in [1usize, 255, 10_007, 1 << 20] {
        let x = common::kernel_test_values(n, 1);
        let dy = common::kernel_test_values(n, 2);
        for act in [
            Activation::Relu,
            Activation::LeakyRelu(0.2),
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            let mut want = vec![0.0; n];
            cpu::activate(&x, act, &mut want);
            let got = gpu.activation(&x, act).unwrap();
            close(&format!("{act:?} forward n={n}"), &got, &want, 1e-6, 1e-5);
            let mut want_dx = vec![0.0; n];
            cpu::activate_backward(&dy, &x, &want, act, &mut want_dx);
            let got_dx = gpu.activation_backward(&dy, &x, &want, act).unwrap();
            close(
                &format!("{act:?} backward n={n}"),
                &got_dx,
                &want_dx,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn dropout_masks_are_identical() {
    let Some(gpu) = gpu() else { return };
    let x = common::kernel_test_values(100_003, 3);
    for (p, seed) in [(0.5, 7u64), (0.25, 1 << 40)] {
        let mut want = vec![0.0; x.len()];
        cpu::dropout(&x, p, seed, &mut want);
        assert_eq!(gpu.dropout(&x, p, seed).unwrap(), want, "p {p} seed {seed}");
    }
}

#[test]
fn fused_adam_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let n = 70_001;
    let common::AdamTrajectory {
        start,
        config: cfg,
        steps: trajectory,
    } = common::cpu_adam_trajectory(n, 5);
    let (mut p, mut m, mut v) = (start, vec![0.0; n], vec![0.0; n]);
    for (t, (g, want)) in (1..).zip(&trajectory) {
        gpu.adam_step(&mut p, g, &mut m, &mut v, &cfg, cfg.lr, t)
            .unwrap();
        close(&format!("Adam step {t}"), &p, want, 1e-7, 1e-6);
    }
}

/// The dense GEMM through the convs' large tiles, against an f64 reference: f32 sums of up
/// to 300 terms of +-9, 1e-4 of the output's max.
#[test]
fn dense_gemm_matches_a_reference() {
    let Some(gpu) = gpu() else { return };
    for (k, (m, n, depth)) in common::GEMM_TEST_SIZES.into_iter().enumerate() {
        let a = common::kernel_test_values(m * depth, 50 + k as u64);
        let b = common::kernel_test_values(depth * n, 60 + k as u64);
        let want = common::reference_gemm((m, n, depth), &a, &b);
        let got = gpu.gemm((m, n, depth), &a, &b).unwrap();
        let scale = want.iter().fold(0.0f32, |s, v| s.max(v.abs()));
        close(
            &format!("gemm {m}x{n}x{depth}"),
            &got,
            &want,
            1e-4 * scale,
            0.0,
        );
    }
}

/// Add, mul, scale (the same f32 operation: exact), the whole-tensor sum (f64 partial sums,
/// within 1e-6 relative of the CPU's f64 sum rounded to f32), its fill backward (exact), and
/// channel concat / split of three parts (copies: exact).
#[test]
fn tensor_plumbing_matches_the_cpu() {
    use mrgan::ops::concat::{concat_channels, split_channels};
    let Some(gpu) = gpu() else { return };
    for n in [1usize, 1000, (1 << 20) + 3] {
        let (a, b) = (
            common::kernel_test_values(n, 5),
            common::kernel_test_values(n, 6),
        );
        let zip = |f: fn(f32, f32) -> f32| -> Vec<f32> {
            a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect()
        };
        assert_eq!(
            gpu.binary(&a, &b, false).unwrap(),
            zip(|x, y| x + y),
            "add n={n}"
        );
        assert_eq!(
            gpu.binary(&a, &b, true).unwrap(),
            zip(|x, y| x * y),
            "mul n={n}"
        );
        let scaled: Vec<f32> = a.iter().map(|v| -0.75 * v).collect();
        assert_eq!(gpu.scale(&a, -0.75).unwrap(), scaled, "scale n={n}");
        let want = mrgan::ops::reduce::sum(
            &mrgan::Tensor::from_vec(mrgan::Shape::new(&[n]), a.clone()).unwrap(),
        )
        .unwrap();
        let got = gpu.sum(&a).unwrap() as f32;
        println!("sum n={n}: {got} vs {want}");
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "sum n={n}"
        );
        assert_eq!(gpu.fill(n, 0.125).unwrap(), vec![0.125; n], "fill n={n}");
    }
    let (images, spatial, channels) = (3usize, 1001usize, [64usize, 1, 63]);
    let parts = common::concat_test_parts(images, spatial, &channels);
    let refs: Vec<(&[f32], usize)> = parts
        .iter()
        .zip(channels)
        .map(|(p, c)| (&p[..], c))
        .collect();
    let mut want = vec![0.0; images * 128 * spatial];
    concat_channels(&refs, images, spatial, &mut want);
    let whole = gpu.concat_channels(&refs, images, spatial).unwrap();
    assert_eq!(whole, want, "concat");
    for index in 0..channels.len() {
        let got = gpu
            .split_channels(&whole, &channels, index, images, spatial)
            .unwrap();
        assert_eq!(
            got,
            split_channels(&want, &channels, index, images, spatial),
            "split {index}"
        );
    }
}

/// A conv primitive's operands (`ConvKernel::operand_lens`'s order) out of x, w and dy, and
/// its result by the CPU op.
fn cpu_conv<'a>(
    pass: ConvPass,
    g: &mrgan::ops::conv::ConvGeometry,
    x: &'a [f32],
    w: &'a [f32],
    dy: &'a [f32],
) -> (&'a [f32], &'a [f32], Vec<f32>) {
    use mrgan::ops::conv::cpu as conv;
    match pass {
        ConvPass::Fprop => {
            let mut want = vec![0.0; dy.len()];
            conv::fprop(x, w, g, &mut want);
            (x, w, want)
        }
        ConvPass::Dgrad => {
            let mut want = vec![0.0; x.len()];
            conv::dgrad(dy, w, g, &mut want);
            (dy, w, want)
        }
        ConvPass::Wgrad => {
            let mut want = vec![0.0; w.len()];
            conv::wgrad(x, dy, g, &mut want);
            (x, dy, want)
        }
    }
}

/// Conv primitives (fprop, dgrad, wgrad, each direct and tiled, the tiled ones as planned, in
/// every tile shape, and in stream K on 2, 10 and 132 blocks: shares crossing tiles, and
/// more blocks than K tiles; fprop to one channel and dgrad to one channel also thin, in one
/// slab and in slabs of one result plane; wgrad to one channel also thin, through its dual) on `common::conv_test_geometries`, zero-padded and
/// padded with reflection or replication (in the kernels, or explicitly around them).
/// Sums run over up to a few thousand f32 terms in a different order from the CPU's GEMM:
/// tolerance 1e-4 of the output's largest magnitude.
#[test]
fn conv_primitives_match_the_cpu() {
    use mrgan::device::cuda::ConvKernel;
    use mrgan::device::tiled_conv::{TileShape, TiledLaunch};
    let Some(gpu) = gpu() else { return };
    let mut thin_cases = 0;
    for (k, g) in common::conv_test_geometries().into_iter().enumerate() {
        let x = common::kernel_test_values(g.input_shape().numel(), 20 + k as u64);
        let w = common::kernel_test_values(g.weight_shape().numel(), 30 + k as u64);
        let dy = common::kernel_test_values(g.output_shape().numel(), 40 + k as u64);
        for kernel in ConvKernel::ALL.into_iter().filter(|k| k.applies(&g)) {
            let (a, b, want) = cpu_conv(kernel.pass(), &g, &x, &w, &dy);
            // Tiled kernels as planned, in every tile shape (the test shapes are too small
            // for the plan to pick large tiles on a big GPU) and in stream K.
            let launches: Vec<Option<TiledLaunch>> = if kernel.tiled() {
                let gemm = kernel.pass().gemm(&g);
                std::iter::once(gpu.tiled_launch(kernel, &g, None))
                    .chain(TileShape::ALL.map(|s| gpu.tiled_launch(kernel, &g, Some(s))))
                    .chain([1, 5, 66].map(|m| TiledLaunch::stream_k(gemm, m)))
                    .map(Some)
                    .collect()
            } else {
                vec![None]
            };
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for launch in launches {
                let got = gpu.conv(kernel, &g, launch, a, b).unwrap();
                let plan = launch.map_or(String::new(), |l| l.label());
                let what = format!("case {k} {} {plan}", kernel.name());
                close(&what, &got, &want, 1e-4 * scale, 0.0);
            }
            if kernel.thin() && kernel.pass() != ConvPass::Wgrad && g.pad_mode == PadMode::Zero {
                // In slabs of one result plane (a budget of one float).
                thin_cases += 1;
                let got = gpu.thin_conv(kernel, &g, 1, a, b).unwrap();
                close(
                    &format!("case {k} {} in slabs", kernel.name()),
                    &got,
                    &want,
                    1e-4 * scale,
                    0.0,
                );
            }
            // The conv the kernel runs: inside an explicit padding (wgrad, thin convs, dgrads
            // not folded; src/device/cuda/conv.rs), the one with none, else `g`.
            let unpadded = g.explicit_padding().map(|(_, unpadded)| unpadded);
            let runs_thin = gpu.runs_thin(kernel, &unpadded.unwrap_or(g));
            if kernel.tiled() && !runs_thin {
                // Autotuned: the launch timing picked, remembered for the geometry it runs
                // (thin convs that fill the GPU run thin instead, tested above as planned).
                gpu.set_autotune(true);
                let got = gpu.conv(kernel, &g, None, a, b);
                gpu.set_autotune(false);
                let tuned = gpu.tuned_launches();
                let (.., launch) = tuned
                    .iter()
                    .find(|(tk, tg, _)| *tk == kernel && (*tg == g || Some(*tg) == unpadded))
                    .expect("the tuned launch is remembered");
                let what = format!("case {k} {} autotuned {}", kernel.name(), launch.label());
                close(&what, &got.unwrap(), &want, 1e-4 * scale, 0.0);
            }
        }
    }
    assert_eq!(thin_cases, 4, "thin fprop and thin dgrad twice each");
    // The summary `bench train --autotune` prints counts every pick once.
    let counted: usize = gpu
        .tuned_summary()
        .iter()
        .flat_map(|line| line.split(|c: char| !c.is_ascii_digit()))
        .filter_map(|n| n.parse::<usize>().ok())
        .sum();
    assert_eq!(counted, gpu.tuned_launches().len());
}

/// Winograd's fprop, dgrad and wgrad on shapes the conv cases do not reach: wgrad's K split
/// in 4 (uneven, planned for 132 multiprocessors), 128 x 128 GEMM tiles (over 64 output
/// channels; dgrad's dual has them on the input side), odd outputs (half tiles), an output
/// of one position, and padding 0 and 2 (dgrad's dual pads by 2 and 0). The transforms add
/// at most four terms per axis and halve; the sums run over up to 544 tiles in another order
/// than the CPU's: tolerance 1e-4 of the output's largest magnitude, as the other conv
/// primitives.
#[test]
fn winograd_convs_match_the_cpu() {
    use mrgan::device::cuda::ConvKernel;
    use mrgan::device::winograd::Winograd;
    use mrgan::ops::conv::{ConvGeometry, ConvOptions};
    let Some(gpu) = gpu() else { return };
    // input (N, C, H, W), output channels, padding, multiprocessors to plan for, wgrad's K
    // splits.
    let cases: [(&[usize], usize, usize, usize, usize); 5] = [
        (&[2, 3, 33, 31], 5, 1, 132, 4),
        (&[1, 72, 6, 5], 70, 1, 132, 1),
        (&[3, 4, 1, 1], 2, 1, 1, 1),
        (&[2, 6, 7, 8], 3, 0, 1, 1),
        (&[1, 5, 4, 3], 66, 2, 1, 1),
    ];
    for (k, (input, c_out, pad, multiprocessors, splits)) in cases.into_iter().enumerate() {
        let weight = Shape::new(&[c_out, input[1], 3, 3]);
        let opts = ConvOptions::new(1, pad);
        let g = ConvGeometry::conv("test", &Shape::new(input), &weight, opts).unwrap();
        let x = common::kernel_test_values(g.input_shape().numel(), 50 + k as u64);
        let w = common::kernel_test_values(g.weight_shape().numel(), 60 + k as u64);
        let dy = common::kernel_test_values(g.output_shape().numel(), 70 + k as u64);
        let wgrad = Winograd::plan(ConvPass::Wgrad, &g, multiprocessors).unwrap();
        assert_eq!(wgrad.splits(), splits, "case {k}");
        for pass in [ConvPass::Fprop, ConvPass::Dgrad, ConvPass::Wgrad] {
            let (a, b, want) = cpu_conv(pass, &g, &x, &w, &dy);
            let kernel = ConvKernel::winograd_for(pass);
            let got = gpu.winograd(kernel, &g, multiprocessors, a, b).unwrap();
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            close(
                &format!("case {k} {}", kernel.name()),
                &got,
                &want,
                1e-4 * scale,
                0.0,
            );
        }
    }
}

/// Batch and instance norm, alone and fused with the LeakyReLU or tanh that follows them,
/// forward (with statistics) and backward with batch or fixed statistics, on odd shapes
/// (the CPU reference is the norm then the activation). Reductions over up to ~20k terms:
/// 1e-4 of the output's max.
#[test]
fn norms_match_the_cpu() {
    use mrgan::ops::norm::cpu::{
        GroupStats, NormLayout, StatsOver, moments, normalize, normalize_backward,
    };
    let Some(gpu) = gpu() else { return };
    for (k, (n, c, s)) in [
        (2usize, 3usize, 35usize),
        (3, 5, 1001),
        (1, 64, 32 * 32 * 16),
    ]
    .into_iter()
    .enumerate()
    {
        let l = NormLayout { n, c, spatial: s };
        let [x, dy, gamma, beta] = common::norm_test_inputs(k, n, c, s);
        for (over, per_sample) in [(StatsOver::Batch, false), (StatsOver::Instance, true)] {
            let (mean, var) = moments(&x, l, over);
            let invstd: Vec<f32> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
            let stats = GroupStats {
                mean: &mean,
                invstd: &invstd,
            };
            let mut z = vec![0.0; x.len()];
            normalize(&x, l, over, stats, Some(&gamma), Some(&beta), &mut z);
            for act in [
                None,
                Some(Activation::LeakyRelu(0.2)),
                Some(Activation::Tanh),
            ] {
                // The fused activation's output, and the gradient reaching the norm through it.
                let (want, dz) = common::fused_activation(&z, &dy, act);
                let (y, gmean, gvar) = gpu
                    .norm_forward(&x, (n, c, s), per_sample, &gamma, &beta, act)
                    .unwrap();
                let what = format!("case {k} {over:?} {act:?}");
                close(&format!("{what} y"), &y, &want, 1e-4, 1e-4);
                close(&format!("{what} mean"), &gmean, &mean, 1e-5, 1e-4);
                close(&format!("{what} var"), &gvar, &var, 1e-5, 1e-4);
                for batch_stats in [true, false] {
                    let mut want_dx = vec![0.0; x.len()];
                    let (want_dg, want_db) = normalize_backward(
                        &dz,
                        &x,
                        l,
                        over,
                        stats,
                        Some(&gamma),
                        batch_stats,
                        Some(&mut want_dx),
                    );
                    let (dx, dg, db) = gpu
                        .norm_backward(
                            &dy,
                            &x,
                            (n, c, s),
                            per_sample,
                            &mean,
                            &invstd,
                            &gamma,
                            batch_stats,
                            act.map(|a| (&want[..], a)),
                        )
                        .unwrap();
                    let scale = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                    close(
                        &format!("{what} batch_stats {batch_stats} dx"),
                        &dx,
                        &want_dx,
                        1e-4 * scale(&want_dx),
                        0.0,
                    );
                    close(
                        &format!("{what} dgamma"),
                        &dg,
                        &want_dg,
                        1e-4 * scale(&want_dg),
                        0.0,
                    );
                    close(
                        &format!("{what} dbeta"),
                        &db,
                        &want_db,
                        1e-4 * scale(&want_db),
                        0.0,
                    );
                }
            }
        }
    }
}

/// The three losses against a tensor and against constant labels, forward (block partial
/// sums in double) and backward. Forward: 1e-6 relative; backward: 1e-6 + 1e-5 relative.
#[test]
fn losses_match_the_cpu() {
    use mrgan::ops::loss::cpu::{LossKind, Target, loss, loss_backward};
    let Some(gpu) = gpu() else { return };
    for n in [1usize, 900, 250_001] {
        let p = common::kernel_test_values(n, 90);
        let t = common::kernel_test_values(n, 91);
        for kind in [LossKind::L1, LossKind::Mse, LossKind::BceWithLogits] {
            for (target, constant) in [(Some(&t[..]), 0.0f32), (None, 1.0), (None, 0.0)] {
                let cpu_target = target.map_or(Target::Const(constant), Target::Values);
                // The CPU reference in f64 (the GPU sums in double too).
                let p64: Vec<f64> = p.iter().map(|&v| v as f64).collect();
                let t64: Vec<f64> = t.iter().map(|&v| v as f64).collect();
                let target64 = if target.is_some() {
                    Target::Values(&t64[..])
                } else {
                    Target::Const(constant as f64)
                };
                let want_loss = loss(kind, &p64, target64);
                let got = gpu.loss(kind, &p, target, constant).unwrap();
                assert!(
                    (got - want_loss).abs() <= 1e-6 * want_loss.abs().max(1.0),
                    "{kind:?} n={n}: {got} vs {want_loss}"
                );
                let mut want_dp = vec![0.0f32; n];
                let mut want_dt = vec![0.0f32; n];
                let with_t = target.is_some();
                loss_backward(
                    kind,
                    &p,
                    cpu_target,
                    1.7,
                    &mut want_dp,
                    if with_t { Some(&mut want_dt) } else { None },
                );
                let (dp, dt) = gpu.loss_backward(kind, &p, target, constant, 1.7).unwrap();
                close(&format!("{kind:?} n={n} dpred"), &dp, &want_dp, 1e-6, 1e-5);
                if with_t {
                    close(
                        &format!("{kind:?} n={n} dtarget"),
                        &dt.unwrap(),
                        &want_dt,
                        1e-6,
                        1e-5,
                    );
                }
            }
        }
    }
}

/// Padding forward and backward, every mode, 2D and 3D, even and uneven pads: copies and
/// short sums, so 1e-6 absolute.
#[test]
fn padding_matches_the_cpu() {
    use mrgan::ops::pad::PadMode;
    use mrgan::ops::pad::cpu::{pad_backward, pad_forward};
    let Some(gpu) = gpu() else { return };
    for (k, (g, reflect_ok)) in common::pad_test_geometries().into_iter().enumerate() {
        let in_len = g.planes * g.input.iter().product::<usize>();
        let out_len = g.planes * g.output().iter().product::<usize>();
        let x = common::kernel_test_values(in_len, 100 + k as u64);
        let dy = common::kernel_test_values(out_len, 110 + k as u64);
        for mode in [PadMode::Zero, PadMode::Reflect, PadMode::Replicate] {
            if mode == PadMode::Reflect && !reflect_ok {
                continue;
            }
            let mut want = vec![0.0; out_len];
            pad_forward(&x, &g, mode, &mut want);
            close(
                &format!("case {k} {mode:?} forward"),
                &gpu.pad(&x, &g, mode, false).unwrap(),
                &want,
                1e-6,
                0.0,
            );
            let mut want = vec![0.0; in_len];
            pad_backward(&dy, &g, mode, &mut want);
            close(
                &format!("case {k} {mode:?} backward"),
                &gpu.pad(&dy, &g, mode, true).unwrap(),
                &want,
                1e-6,
                1e-6,
            );
        }
    }
}

/// Device tensors and arenas: copies there and back, batch items and stacking, the image
/// pool, a parameter arena's slices, gradient accumulation and zeroing, and the conv bias
/// (the norm kernels with identity statistics) through the ops. Copies are exact; the bias
/// add is x + b exactly; the bias gradient is a sum over up to 2e3 terms: 1e-5 relative.
#[test]
fn device_tensors_and_arenas_match_the_cpu() {
    use mrgan::Tensor;
    use mrgan::device::Device;
    use mrgan::models::image_pool::ImagePool;
    use mrgan::nn::params::{ParamArena, ParamRole};
    use mrgan::ops::conv::{ConvOptions, conv};
    use rand::SeedableRng;
    let Some(gpu) = gpu() else { return };
    let device = Device::Cuda(gpu);
    let host = |t: &Tensor| t.to_vec().unwrap();
    let x = Tensor::from_vec([3, 2, 5, 7], common::kernel_test_values(210, 1)).unwrap();
    let xd = x.to_device(&device).unwrap();
    assert_eq!(xd.device(), device);
    assert_eq!(host(&xd), host(&x), "to_device / to_vec");
    for i in 0..3 {
        let (a, b) = (x.batch_item(i).unwrap(), xd.batch_item(i).unwrap());
        assert_eq!(host(&b), host(&a), "batch item {i}");
    }
    let parts = |t: &Tensor| [t.batch_item(2).unwrap(), t.clone()];
    let stacked = Tensor::cat_batch(&parts(&xd)).unwrap();
    assert_eq!(stacked.dims(), [4, 2, 5, 7]);
    assert_eq!(
        host(&stacked),
        host(&Tensor::cat_batch(&parts(&x)).unwrap())
    );

    // The pool draws from the same generator on both devices, so it answers the same.
    let (mut pool_cpu, mut pool_gpu) = (ImagePool::new(2), ImagePool::new(2));
    let mut rngs = [0, 1].map(|_| rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7));
    for step in 0..4 {
        let batch = Tensor::from_vec([3, 2, 5, 7], common::kernel_test_values(210, step)).unwrap();
        let want = pool_cpu.query(&batch, &mut rngs[0]).unwrap();
        let got = pool_gpu
            .query(&batch.to_device(&device).unwrap(), &mut rngs[1])
            .unwrap();
        assert_eq!(got.device(), device);
        assert_eq!(host(&got), host(&want), "pool step {step}");
    }

    let mut arena = ParamArena::new();
    let w = arena.add("w", [4, 2, 3, 3], ParamRole::Weight);
    let b = arena.add("b", [4], ParamRole::Bias);
    let values = common::kernel_test_values(arena.len(), 3);
    arena.values_mut().copy_from_slice(&values);
    let wanted = (arena.tensor(w).unwrap(), arena.tensor(b).unwrap());
    arena.to_device(&device).unwrap();
    assert_eq!(arena.device(), device);
    let (wd, bd) = (arena.tensor(w).unwrap(), arena.tensor(b).unwrap());
    assert_eq!((host(&wd), host(&bd)), (host(&wanted.0), host(&wanted.1)));
    assert_eq!(arena.values_to_vec().unwrap(), values);

    // Conv with a bias, and the bias gradient, against the CPU op.
    let opts = ConvOptions::new(1, 1);
    let want = conv(&x, &wanted.0, Some(&wanted.1), opts).unwrap();
    let got = conv(&xd, &wd, Some(&bd), opts).unwrap();
    close("conv + bias", &host(&got), &host(&want), 1e-4, 1e-4);
    // d(sum(conv(x) + b)) on either device: the gradients and the bias's leaf.
    let conv_sum_grads = |xv: &Tensor, a: &ParamArena| {
        let mut tape = mrgan::autograd::Tape::new();
        let xv = tape.constant(xv.clone());
        let (wv, bv) = (tape.param(a, w).unwrap(), tape.param(a, b).unwrap());
        let y = tape.conv(xv, wv, Some(bv), opts).unwrap();
        let loss = tape.sum(y).unwrap();
        (tape.backward(loss).unwrap(), bv)
    };
    let mut host_arena = ParamArena::new();
    host_arena.add("w", [4, 2, 3, 3], ParamRole::Weight);
    host_arena.add("b", [4], ParamRole::Bias);
    host_arena.values_mut().copy_from_slice(&values);
    let (want_grads, bv) = conv_sum_grads(&x, &host_arena);
    let want_db = host(want_grads.get(bv).unwrap());
    let (grads, bv) = conv_sum_grads(&xd, &arena);
    close(
        "bias gradient",
        &host(grads.get(bv).unwrap()),
        &want_db,
        1e-5,
        1e-5,
    );

    // Gradients accumulate into the arena on the device, and zero in one fill.
    arena.zero_grad().unwrap();
    arena.accumulate_grads(&grads).unwrap();
    arena.accumulate_grads(&grads).unwrap();
    let acc = arena.grads_to_vec().unwrap();
    let db_range = arena.entry(b).range();
    close(
        "accumulated twice",
        &acc[db_range],
        &want_db.iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        1e-5,
        1e-5,
    );
    arena.zero_grad().unwrap();
    assert!(arena.grads_to_vec().unwrap().iter().all(|&g| g == 0.0));
}

/// Sliding-window prediction with the volume on the device (`kernels/window.cu`: cut, f64
/// weighted add, blend) against the host's, for a non-linear "generator" (0.7 x^2, the
/// same f32 operations on both): identical bits, since both sum in f64 in the same order
/// with separately rounded products. Odd sizes, a volume smaller than the patch, strides
/// that overlap unevenly, batches that do not divide the windows.
#[test]
fn sliding_window_blend_matches_the_cpu() {
    use mrgan::device::Device;
    use mrgan::infer::sliding::{Blend, SlidingWindow, run};
    use mrgan::ops::elementwise::{mul_tensors, scale_tensor};
    let Some(gpu) = gpu() else { return };
    let gpu = Device::Cuda(gpu);
    for (dims, patch, stride, batch) in [
        ([37usize, 29, 19], [16, 12, 8], [5, 7, 3], 3),
        ([9, 30, 5], [12, 12, 8], [12, 4, 8], 2),
        ([64, 48, 20], [32, 32, 16], [16, 16, 8], 4),
    ] {
        let n: usize = dims.iter().product();
        let data = common::kernel_test_values(n, 11);
        for blend in [Blend::Gaussian, Blend::Average] {
            let opts = SlidingWindow {
                patch,
                stride,
                blend,
                batch,
            };
            let squared = |device: &Device| {
                run(
                    &data,
                    dims,
                    -1.0,
                    &opts,
                    device,
                    |p| scale_tensor(&mul_tensors(&p, &p)?, 0.7),
                    &mut |_, _| {},
                )
                .unwrap()
            };
            let (want, got) = (squared(&Device::Cpu), squared(&gpu));
            let worst = common::max_abs_difference(&got, &want);
            println!(
                "sliding window {dims:?} patch {patch:?} {blend:?}: max abs error {worst:.2e}"
            );
            assert!(
                got == want,
                "{dims:?} {blend:?}: differs from the CPU's blend"
            );
        }
    }
}

/// Batch norm's running-statistics update in one launch against the CPU's formula
/// (`r * (1 - m) + (b * m) * unbias`, each product and sum rounded on its own): exact.
#[test]
fn running_statistics_update_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let c = 300;
    let values = |seed| common::kernel_test_values(c, seed);
    let (mean, var, batch_mean) = (values(61), values(62), values(63));
    let batch_var: Vec<f32> = values(64).iter().map(|v| v.abs()).collect();
    let var: Vec<f32> = var.iter().map(|v| v.abs()).collect();
    let (m, unbias) = (0.1f32, 4096.0f32 / 4095.0);
    let up = |v: &[f32]| gpu.upload_buffer(v).unwrap();
    let (got_mean, got_var) = gpu
        .launch_running_stats(
            (&up(&mean), &up(&var)),
            (&up(&batch_mean), &up(&batch_var)),
            m,
            unbias,
        )
        .unwrap();
    let mix = |r: &[f32], b: &[f32], unbias: f32| -> Vec<f32> {
        r.iter()
            .zip(b)
            .map(|(&r, &b)| r * (1.0 - m) + (b * m) * unbias)
            .collect()
    };
    assert_eq!(got_mean.to_host().unwrap(), mix(&mean, &batch_mean, 1.0));
    assert_eq!(got_var.to_host().unwrap(), mix(&var, &batch_var, unbias));
    println!("running statistics ({c} channels): max abs error 0.00e0 (exact)");
}
