//! Finite-difference gradient checks of every CPU kernel, in f64.
//!
//! For an op y = f(x) and a random upstream gradient gy, the analytic gradient of
//! L(x) = sum(gy * f(x)) from the kernel's backward is compared, element by element, with
//! the central difference (L(x + h e_i) - L(x - h e_i)) / 2h, h = 1e-6.
//! Truncation error is O(h^2) ~ 1e-12 and rounding error ~ 1e-16 * |L| / h ~ 1e-9, so the
//! tolerance |num - ana| <= 1e-6 + 1e-5 |ana| (torch.autograd.gradcheck's defaults, tighter
//! in atol) has a wide margin yet fails on any wrong index or missing term.
//! Inputs of non-smooth ops (ReLU family, L1) are kept at least 1e-3 away from their kinks.

mod common;

use mrgan::ops::concat::{concat_channels, split_channels};
use mrgan::ops::conv::cpu as conv;
use mrgan::ops::conv::{ConvGeometry, ConvOptions};
use mrgan::ops::elementwise::cpu::{self as ew, Activation};
use mrgan::ops::loss::cpu::{self as loss, LossKind, Target};
use mrgan::ops::norm::cpu::{self as norm, GroupStats, NormLayout, StatsOver};
use mrgan::ops::pad::cpu::{self as pad, PadGeometry, PadMode};
use mrgan::tensor::Shape;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

const H: f64 = 1e-6;
const ATOL: f64 = 1e-6;
const RTOL: f64 = 1e-5;

fn randn(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// Random values with |v| >= 1e-3, for ops with a kink at 0.
fn randn_off_zero(n: usize, seed: u64) -> Vec<f64> {
    randn(n, seed)
        .into_iter()
        .map(|v| if v.abs() < 1e-3 { v + 2e-3 } else { v })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compares `analytic` with central differences of `x -> sum(gy * f(x))`.
fn check(what: &str, x: &[f64], gy: &[f64], f: impl Fn(&[f64]) -> Vec<f64>, analytic: &[f64]) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let mut xp = x.to_vec();
    let mut worst: f64 = 0.0;
    for i in 0..x.len() {
        xp[i] = x[i] + H;
        let plus = dot(gy, &f(&xp));
        xp[i] = x[i] - H;
        let minus = dot(gy, &f(&xp));
        xp[i] = x[i];
        let numeric = (plus - minus) / (2.0 * H);
        let err = (numeric - analytic[i]).abs();
        let allowed = ATOL + RTOL * analytic[i].abs();
        worst = worst.max(err / allowed);
        assert!(
            err <= allowed,
            "{what}: element {i}: numeric {numeric}, analytic {}",
            analytic[i]
        );
    }
    println!(
        "{what}: {} elements, worst error {:.1}% of tolerance",
        x.len(),
        100.0 * worst
    );
}

// ---------- convolution ----------

struct ConvCase {
    name: &'static str,
    x: &'static [usize],
    w: &'static [usize],
    stride: usize,
    padding: usize,
    output_padding: usize,
    pad_mode: PadMode,
    transposed: bool,
}

/// Cases with at most 4 output channels (on the conv side) take the direct loops, the others
/// im2col + GEMM; both paths are covered. The reflection and replication cases pad inside the
/// conv (the ResNet generators' stems, heads and blocks; one at stride 2).
const CONV_CASES: &[ConvCase] = &[
    ConvCase {
        name: "conv2d 3x3 s2 p1 gemm",
        x: &[2, 3, 5, 6],
        w: &[6, 3, 3, 3],
        stride: 2,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: false,
    },
    ConvCase {
        name: "conv3d 3x3x3 s2 p1 gemm",
        x: &[1, 2, 4, 3, 5],
        w: &[5, 2, 3, 3, 3],
        stride: 2,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: false,
    },
    ConvCase {
        name: "convT2d 3x3 s2 p1 op1 gemm",
        x: &[2, 5, 3, 3],
        w: &[5, 2, 3, 3],
        stride: 2,
        padding: 1,
        output_padding: 1,
        pad_mode: PadMode::Zero,
        transposed: true,
    },
    ConvCase {
        name: "convT3d 3x3x3 s2 p1 op1 gemm",
        x: &[1, 5, 2, 2, 3],
        w: &[5, 2, 3, 3, 3],
        stride: 2,
        padding: 1,
        output_padding: 1,
        pad_mode: PadMode::Zero,
        transposed: true,
    },
    ConvCase {
        name: "conv2d 3x3 s1 p1 odd",
        x: &[2, 3, 5, 7],
        w: &[4, 3, 3, 3],
        stride: 1,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: false,
    },
    ConvCase {
        name: "conv2d 4x4 s2 p1",
        x: &[2, 2, 7, 6],
        w: &[3, 2, 4, 4],
        stride: 2,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: false,
    },
    ConvCase {
        name: "conv2d 3x3 s2 p0",
        x: &[1, 2, 7, 5],
        w: &[2, 2, 3, 3],
        stride: 2,
        padding: 0,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: false,
    },
    ConvCase {
        name: "conv3d 3x3x3 s2 p1",
        x: &[2, 2, 5, 4, 3],
        w: &[3, 2, 3, 3, 3],
        stride: 2,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: false,
    },
    ConvCase {
        name: "conv3d 2x2x2 s1 p0",
        x: &[1, 3, 3, 3, 4],
        w: &[2, 3, 2, 2, 2],
        stride: 1,
        padding: 0,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: false,
    },
    ConvCase {
        name: "convT2d 3x3 s2 p1 op1",
        x: &[2, 3, 3, 4],
        w: &[3, 2, 3, 3],
        stride: 2,
        padding: 1,
        output_padding: 1,
        pad_mode: PadMode::Zero,
        transposed: true,
    },
    ConvCase {
        name: "convT2d 4x4 s2 p1",
        x: &[1, 2, 3, 3],
        w: &[2, 3, 4, 4],
        stride: 2,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Zero,
        transposed: true,
    },
    ConvCase {
        name: "convT3d 3x3x3 s2 p1 op1",
        x: &[2, 2, 2, 3, 2],
        w: &[2, 2, 3, 3, 3],
        stride: 2,
        padding: 1,
        output_padding: 1,
        pad_mode: PadMode::Zero,
        transposed: true,
    },
    ConvCase {
        name: "conv2d 3x3 s1 p1 reflect gemm",
        x: &[2, 3, 6, 5],
        w: &[6, 3, 3, 3],
        stride: 1,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Reflect,
        transposed: false,
    },
    ConvCase {
        name: "conv2d 7x7 s1 p3 reflect",
        x: &[1, 2, 8, 9],
        w: &[2, 2, 7, 7],
        stride: 1,
        padding: 3,
        output_padding: 0,
        pad_mode: PadMode::Reflect,
        transposed: false,
    },
    ConvCase {
        name: "conv3d 3x3x3 s1 p1 replicate gemm",
        x: &[1, 2, 4, 5, 3],
        w: &[5, 2, 3, 3, 3],
        stride: 1,
        padding: 1,
        output_padding: 0,
        pad_mode: PadMode::Replicate,
        transposed: false,
    },
    ConvCase {
        name: "conv2d 3x3 s2 p2 replicate",
        x: &[1, 2, 7, 6],
        w: &[3, 2, 3, 3],
        stride: 2,
        padding: 2,
        output_padding: 0,
        pad_mode: PadMode::Replicate,
        transposed: false,
    },
];

#[test]
fn conv_gradients() {
    for (k, c) in CONV_CASES.iter().enumerate() {
        let opts = ConvOptions::new(c.stride, c.padding)
            .with_output_padding(c.output_padding)
            .with_pad_mode(c.pad_mode);
        let (xs, ws) = (Shape::new(c.x), Shape::new(c.w));
        let g = if c.transposed {
            ConvGeometry::conv_transpose("test", &xs, &ws, opts).unwrap()
        } else {
            ConvGeometry::conv("test", &xs, &ws, opts).unwrap()
        };
        let x = randn(xs.numel(), 10 + k as u64);
        let w = randn(ws.numel(), 20 + k as u64);
        let bias_channels = if c.transposed { g.c_in } else { g.c_out };
        let b = randn(bias_channels, 30 + k as u64);
        // Output side of the op: the conv's output, or for a transposed conv the conv's input.
        let (y_len, y_spatial) = if c.transposed {
            (g.input_shape().numel(), g.input_volume())
        } else {
            (g.output_shape().numel(), g.output_volume())
        };
        let gy = randn(y_len, 40 + k as u64);
        let forward = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; y_len];
            if c.transposed {
                conv::dgrad(x, w, &g, &mut y);
            } else {
                conv::fprop(x, w, &g, &mut y);
            }
            conv::add_bias(&mut y, b, bias_channels, y_spatial);
            y
        };
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        if c.transposed {
            conv::fprop(&gy, &w, &g, &mut dx);
            conv::wgrad(&gy, &x, &g, &mut dw);
        } else {
            conv::dgrad(&gy, &w, &g, &mut dx);
            conv::wgrad(&x, &gy, &g, &mut dw);
        }
        let db = conv::bias_grad(&gy, bias_channels, y_spatial);
        check(
            &format!("{} dx", c.name),
            &x,
            &gy,
            |x| forward(x, &w, &b),
            &dx,
        );
        check(
            &format!("{} dw", c.name),
            &w,
            &gy,
            |w| forward(&x, w, &b),
            &dw,
        );
        check(
            &format!("{} db", c.name),
            &b,
            &gy,
            |b| forward(&x, &w, b),
            &db,
        );
    }
}

// ---------- normalisation ----------

#[test]
fn norm_gradients() {
    let cases = [
        (
            "batch norm 2d",
            NormLayout {
                n: 3,
                c: 2,
                spatial: 5 * 3,
            },
            StatsOver::Batch,
            true,
        ),
        (
            "batch norm 3d",
            NormLayout {
                n: 2,
                c: 3,
                spatial: 3 * 2 * 3,
            },
            StatsOver::Batch,
            true,
        ),
        (
            "instance norm 2d",
            NormLayout {
                n: 2,
                c: 3,
                spatial: 4 * 5,
            },
            StatsOver::Instance,
            true,
        ),
        (
            "instance norm 3d",
            NormLayout {
                n: 2,
                c: 2,
                spatial: 3 * 3 * 2,
            },
            StatsOver::Instance,
            true,
        ),
        (
            "batch norm eval",
            NormLayout {
                n: 2,
                c: 3,
                spatial: 7,
            },
            StatsOver::Batch,
            false,
        ),
    ];
    for (k, (name, l, over, batch_stats)) in cases.into_iter().enumerate() {
        let len = l.n * l.c * l.spatial;
        let x: Vec<f64> = randn(len, 50 + k as u64)
            .iter()
            .map(|v| 2.0 * v + 0.3)
            .collect();
        let gamma: Vec<f64> = randn(l.c, 60 + k as u64)
            .iter()
            .map(|v| 1.0 + 0.2 * v)
            .collect();
        let beta = randn(l.c, 70 + k as u64);
        let gy = randn(len, 80 + k as u64);
        // Evaluation mode uses fixed statistics, not those of x.
        let fixed: (Vec<f64>, Vec<f64>) = (
            randn(l.c, 90),
            randn(l.c, 91).iter().map(|v| 1.0 + v.abs()).collect(),
        );
        let stats = |x: &[f64]| -> (Vec<f64>, Vec<f64>) {
            let (mean, var) = if batch_stats {
                norm::moments(x, l, over)
            } else {
                fixed.clone()
            };
            (mean, var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect())
        };
        let forward = |x: &[f64], gamma: &[f64], beta: &[f64]| {
            let (mean, invstd) = stats(x);
            let mut y = vec![0.0; len];
            norm::normalize(
                x,
                l,
                over,
                GroupStats {
                    mean: &mean,
                    invstd: &invstd,
                },
                Some(gamma),
                Some(beta),
                &mut y,
            );
            y
        };
        let (mean, invstd) = stats(&x);
        let mut dx = vec![0.0; len];
        let (dgamma, dbeta) = norm::normalize_backward(
            &gy,
            &x,
            l,
            over,
            GroupStats {
                mean: &mean,
                invstd: &invstd,
            },
            Some(&gamma),
            batch_stats,
            Some(&mut dx),
        );
        check(
            &format!("{name} dx"),
            &x,
            &gy,
            |x| forward(x, &gamma, &beta),
            &dx,
        );
        check(
            &format!("{name} dgamma"),
            &gamma,
            &gy,
            |g| forward(&x, g, &beta),
            &dgamma,
        );
        check(
            &format!("{name} dbeta"),
            &beta,
            &gy,
            |b| forward(&x, &gamma, b),
            &dbeta,
        );
    }
}

// ---------- padding ----------

#[test]
fn pad_gradients() {
    let cases = [
        (
            "reflect 2d",
            [1, 5, 6],
            [[0, 0], [2, 2], [2, 2]],
            PadMode::Reflect,
        ),
        (
            "replicate 2d",
            [1, 3, 4],
            [[0, 0], [3, 3], [3, 3]],
            PadMode::Replicate,
        ),
        (
            "zero 2d",
            [1, 3, 5],
            [[0, 0], [1, 1], [1, 1]],
            PadMode::Zero,
        ),
        (
            "reflect 3d",
            [3, 4, 5],
            [[1, 1], [1, 1], [1, 1]],
            PadMode::Reflect,
        ),
        (
            "replicate 3d",
            [3, 2, 3],
            [[2, 2], [2, 2], [2, 2]],
            PadMode::Replicate,
        ),
        (
            "zero 3d uneven",
            [2, 3, 3],
            [[1, 0], [0, 2], [1, 1]],
            PadMode::Zero,
        ),
    ];
    for (k, (name, input, pads, mode)) in cases.into_iter().enumerate() {
        let g = PadGeometry {
            planes: 2 * 3,
            input,
            pads,
        };
        let in_len = g.planes * input.iter().product::<usize>();
        let out_len = g.planes * g.output().iter().product::<usize>();
        let x = randn(in_len, 100 + k as u64);
        let gy = randn(out_len, 110 + k as u64);
        let mut dx = vec![0.0; in_len];
        pad::pad_backward(&gy, &g, mode, &mut dx);
        let forward = |x: &[f64]| {
            let mut y = vec![0.0; out_len];
            pad::pad_forward(x, &g, mode, &mut y);
            y
        };
        check(&format!("pad {name} dx"), &x, &gy, forward, &dx);
    }
}

// ---------- element-wise ----------

#[test]
fn activation_gradients() {
    for (k, act) in [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Tanh,
        Activation::Sigmoid,
    ]
    .into_iter()
    .enumerate()
    {
        let x: Vec<f64> = randn_off_zero(37, 120 + k as u64)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let gy = randn(37, 130 + k as u64);
        let forward = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            ew::activate(x, act, &mut y);
            y
        };
        let y = forward(&x);
        let mut dx = vec![0.0; x.len()];
        ew::activate_backward(&gy, &x, &y, act, &mut dx);
        check(&format!("{act:?} dx"), &x, &gy, forward, &dx);
    }
}

#[test]
fn dropout_gradient() {
    let x = randn(101, 140);
    let gy = randn(101, 141);
    let forward = |x: &[f64]| {
        let mut y = vec![0.0; x.len()];
        ew::dropout(x, 0.3, 7, &mut y);
        y
    };
    let mut dx = vec![0.0; x.len()];
    ew::dropout(&gy, 0.3, 7, &mut dx);
    check("dropout dx", &x, &gy, forward, &dx);
}

#[test]
fn concat_gradients() {
    let (n, spatial, channels) = (2, 6, [3usize, 2]);
    let a = randn(n * channels[0] * spatial, 150);
    let b = randn(n * channels[1] * spatial, 151);
    let gy = randn(n * 5 * spatial, 152);
    let forward = |a: &[f64], b: &[f64]| {
        let mut y = vec![0.0; n * 5 * spatial];
        concat_channels(&[(a, channels[0]), (b, channels[1])], n, spatial, &mut y);
        y
    };
    check(
        "concat da",
        &a,
        &gy,
        |a| forward(a, &b),
        &split_channels(&gy, &channels, 0, n, spatial),
    );
    check(
        "concat db",
        &b,
        &gy,
        |b| forward(&a, b),
        &split_channels(&gy, &channels, 1, n, spatial),
    );
}

// ---------- losses ----------

#[test]
fn loss_gradients() {
    for (k, kind) in [LossKind::L1, LossKind::Mse, LossKind::BceWithLogits]
        .into_iter()
        .enumerate()
    {
        let p: Vec<f64> = randn(24, 160 + k as u64).iter().map(|v| 2.0 * v).collect();
        // Keep p - t away from L1's kink.
        let t: Vec<f64> = p
            .iter()
            .zip(randn_off_zero(24, 170 + k as u64))
            .map(|(p, d)| p + d)
            .collect();
        let gy = [1.7];
        let mut dp = vec![0.0; p.len()];
        let mut dt = vec![0.0; t.len()];
        loss::loss_backward(kind, &p, Target::Values(&t), gy[0], &mut dp, Some(&mut dt));
        check(
            &format!("{kind:?} dpred"),
            &p,
            &gy,
            |p| vec![loss::loss(kind, p, Target::Values(&t))],
            &dp,
        );
        check(
            &format!("{kind:?} dtarget"),
            &t,
            &gy,
            |t| vec![loss::loss(kind, &p, Target::Values(t))],
            &dt,
        );
        for label in [0.0, 1.0] {
            let p: Vec<f64> = randn_off_zero(24, 180 + k as u64)
                .iter()
                .map(|v| label + v)
                .collect();
            let mut dp = vec![0.0; p.len()];
            loss::loss_backward(kind, &p, Target::Const(label), gy[0], &mut dp, None);
            check(
                &format!("{kind:?} vs {label} dpred"),
                &p,
                &gy,
                |p| vec![loss::loss(kind, p, Target::Const(label))],
                &dp,
            );
        }
    }
}
