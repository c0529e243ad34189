//! Statistical checks of weight initialisation and dropout. Sample sizes are large enough
//! that each bound sits at 5+ standard errors of the estimate, and seeds are fixed, so the
//! tests are deterministic yet would fail on a wrong formula.

use mrgan::Tensor;
use mrgan::autograd::Tape;
use mrgan::nn::init::{InitKind, fans, init_arena};
use mrgan::nn::params::{ParamArena, ParamRole};
use mrgan::tensor::Shape;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn arena_with(kind: InitKind, gain: f32, seed: u64) -> ParamArena {
    let mut arena = ParamArena::new();
    arena.add("conv.w", [256, 128, 4, 4], ParamRole::Weight);
    arena.add("conv.b", [256], ParamRole::Bias);
    arena.add("bn.w", [50_000], ParamRole::NormScale);
    arena.add("convT.w", [128, 64, 3, 3], ParamRole::Weight);
    init_arena(
        &mut arena,
        kind,
        gain,
        &mut Xoshiro256PlusPlus::seed_from_u64(seed),
    );
    arena
}

#[test]
fn reference_normal_init() {
    let arena = arena_with(InitKind::Normal, 0.02, 1);
    let e = arena.entries();
    let (m, s) = mean_std(&arena.values()[e[0].range()]);
    // 524288 samples: standard error of the std ~ 0.02 / sqrt(2n) = 2e-5.
    assert!(
        m.abs() < 1e-4 && (s - 0.02).abs() < 1e-4,
        "weight mean {m} std {s}"
    );
    assert!(
        arena.values()[e[1].range()].iter().all(|&v| v == 0.0),
        "biases start at 0"
    );
    let (m, s) = mean_std(&arena.values()[e[2].range()]);
    assert!(
        (m - 1.0).abs() < 1e-3 && (s - 0.02).abs() < 5e-4,
        "BatchNorm scale mean {m} std {s}"
    );
}

#[test]
fn xavier_and_kaiming_use_pytorch_fans() {
    let conv_t = Shape::new(&[128, 64, 3, 3]);
    assert_eq!(
        fans(&conv_t),
        (64 * 9, 128 * 9),
        "fan_in is dim 1 x receptive field"
    );
    let arena = arena_with(InitKind::Xavier, 0.02, 2);
    let (_, s) = mean_std(&arena.values()[arena.entries()[0].range()]);
    let expect = 0.02 * (2.0f64 / (128.0 * 16.0 + 256.0 * 16.0)).sqrt();
    assert!(
        (s / expect - 1.0).abs() < 5e-3,
        "xavier std {s}, expected {expect}"
    );
    let arena = arena_with(InitKind::Kaiming, 0.02, 3);
    let (_, s) = mean_std(&arena.values()[arena.entries()[0].range()]);
    let expect = (2.0f64 / (128.0 * 16.0)).sqrt();
    assert!(
        (s / expect - 1.0).abs() < 5e-3,
        "kaiming std {s}, expected {expect}"
    );
}

#[test]
fn orthogonal_init_is_orthogonal_times_gain() {
    for (rows, cols) in [(8usize, 27usize), (27, 8)] {
        let mut arena = ParamArena::new();
        let shape = if cols == 27 {
            vec![rows, 3, 3, 3]
        } else {
            vec![rows, 2, 2, 2]
        };
        arena.add("w", Shape::new(&shape), ParamRole::Weight);
        init_arena(
            &mut arena,
            InitKind::Orthogonal,
            1.5,
            &mut Xoshiro256PlusPlus::seed_from_u64(4),
        );
        let w = arena.values();
        // The shorter side's vectors are orthogonal with norm `gain`.
        let (count, len) = (rows.min(cols), rows.max(cols));
        let vector = |i: usize, k: usize| {
            if rows <= cols {
                w[i * cols + k]
            } else {
                w[k * cols + i]
            }
        };
        for i in 0..count {
            for j in 0..count {
                let d: f32 = (0..len).map(|k| vector(i, k) * vector(j, k)).sum();
                let expect = if i == j { 1.5 * 1.5 } else { 0.0 };
                assert!(
                    (d - expect).abs() < 1e-5,
                    "{rows}x{cols}: <v{i}, v{j}> = {d}"
                );
            }
        }
    }
}

#[test]
fn init_is_reproducible_from_the_seed() {
    assert_eq!(
        arena_with(InitKind::Normal, 0.02, 7).values(),
        arena_with(InitKind::Normal, 0.02, 7).values()
    );
    assert_ne!(
        arena_with(InitKind::Normal, 0.02, 7).values(),
        arena_with(InitKind::Normal, 0.02, 8).values()
    );
}

#[test]
fn dropout_drops_p_and_rescales() {
    let n = 200_000;
    let mut tape = Tape::new();
    let x = tape.leaf(Tensor::full([n], 1.0), true);
    let y = tape.dropout(x, 0.5, 42, true).unwrap();
    let kept: Vec<f32> = tape.value(y).to_vec().unwrap();
    let zeros = kept.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    // Standard error sqrt(0.25 / n) ~ 1.1e-3.
    assert!((zeros - 0.5).abs() < 6e-3, "dropped fraction {zeros}");
    assert!(
        kept.iter().all(|&v| v == 0.0 || v == 2.0),
        "survivors scaled by 1 / (1 - p)"
    );
    // Same seed, same mask; other seed, other mask.
    let again = tape.dropout(x, 0.5, 42, true).unwrap();
    assert_eq!(tape.value(again).as_slice(), &kept[..]);
    let other = tape.dropout(x, 0.5, 43, true).unwrap();
    assert_ne!(tape.value(other).as_slice(), &kept[..]);
    // Evaluation mode passes the input through.
    assert_eq!(tape.dropout(x, 0.5, 42, false).unwrap(), x);
    // The gradient uses the same mask.
    let l = tape.sum(y).unwrap();
    let g = tape.backward(l).unwrap();
    assert_eq!(g.get(x).unwrap().as_slice(), &kept[..]);
}
