//! The tape as a whole: a small network using every op family, checked against finite
//! differences, plus the semantics GAN training relies on (several forwards before one
//! backward, frozen networks, detach, no-grad, per-call batch statistics) and clear errors.

use mrgan::autograd::{Tape, Var};
use mrgan::nn::init::{InitKind, init_arena};
use mrgan::nn::params::{ParamArena, ParamId, ParamRole};
use mrgan::ops::conv::ConvOptions;
use mrgan::ops::loss::{LossKind, LossTarget};
use mrgan::ops::norm::{Affine, RunningStats};
use mrgan::ops::pad::PadMode;
use mrgan::{Error, Tensor};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec(
        shape,
        (0..n).map(|_| StandardNormal.sample(&mut rng)).collect(),
    )
    .unwrap()
}

/// A tiny encoder-decoder touching every op family. Its activations are smooth (tanh,
/// sigmoid): with ReLU-type kinks after a norm, finite differences cross kinks and disagree
/// by a few percent although the gradients are right (the kinked ops have their own f64
/// checks in gradcheck.rs and goldens in torch_golden.rs).
struct TinyNet {
    arena: ParamArena,
    ids: Vec<ParamId>,
    bn: RunningStats,
}

impl TinyNet {
    fn new(seed: u64) -> Self {
        let mut arena = ParamArena::new();
        let ids = vec![
            arena.add("c1.w", [4, 2, 3, 3], ParamRole::Weight),
            arena.add("c1.b", [4], ParamRole::Bias),
            arena.add("bn.g", [4], ParamRole::NormScale),
            arena.add("bn.b", [4], ParamRole::Bias),
            arena.add("c2.w", [4, 4, 4, 4], ParamRole::Weight),
            arena.add("in.g", [4], ParamRole::NormScale),
            arena.add("in.b", [4], ParamRole::Bias),
            arena.add("t.w", [4, 2, 4, 4], ParamRole::Weight),
            arena.add("t.b", [2], ParamRole::Bias),
            arena.add("c3.w", [1, 4, 3, 3], ParamRole::Weight),
        ];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        init_arena(&mut arena, InitKind::Kaiming, 1.0, &mut rng);
        // Non-trivial shifts so every parameter matters.
        for id in [ids[1], ids[3], ids[6], ids[8]] {
            let v = randn(&[arena.entry(id).shape.numel()], seed + 1);
            arena.value_mut(id).copy_from_slice(v.as_slice());
        }
        TinyNet {
            arena,
            ids,
            bn: RunningStats::new(4),
        }
    }

    /// [n, 2, 8, 8] -> [n, 1, 8, 8]
    fn forward(&mut self, tape: &mut Tape, x: Var) -> Var {
        let p: Vec<Var> = self
            .ids
            .iter()
            .map(|&id| tape.param(&self.arena, id).unwrap())
            .collect();
        let h = tape.pad(x, PadMode::Reflect, 1).unwrap();
        let h = tape
            .conv(h, p[0], Some(p[1]), ConvOptions::new(1, 0))
            .unwrap();
        let h = tape
            .batch_norm(
                h,
                Some(Affine {
                    gamma: p[2],
                    beta: p[3],
                }),
                &mut self.bn,
                true,
            )
            .unwrap();
        let h = tape.tanh(h).unwrap();
        let h = tape.conv(h, p[4], None, ConvOptions::new(2, 1)).unwrap();
        let h = tape
            .instance_norm(
                h,
                Some(Affine {
                    gamma: p[5],
                    beta: p[6],
                }),
            )
            .unwrap();
        let h = tape.sigmoid(h).unwrap();
        let h = tape.dropout(h, 0.25, 99, true).unwrap();
        let h = tape
            .conv_transpose(h, p[7], Some(p[8]), ConvOptions::new(2, 1))
            .unwrap();
        let h = tape.concat(&[h, x]).unwrap();
        let h = tape.pad(h, PadMode::Replicate, 1).unwrap();
        let h = tape.conv(h, p[9], None, ConvOptions::new(1, 0)).unwrap();
        tape.tanh(h).unwrap()
    }
}

/// A loss using the remaining ops (smooth ones, see above): MSE to a target, LSGAN and BCE terms, scale, add, mul, mean.
fn objective(tape: &mut Tape, y: Var, target: Var) -> Var {
    let fit = tape
        .loss(LossKind::Mse, y, LossTarget::Var(target))
        .unwrap();
    let fit = tape.scale(fit, 10.0).unwrap();
    let mse = tape.loss(LossKind::Mse, y, LossTarget::Const(1.0)).unwrap();
    let bce = tape
        .loss(LossKind::BceWithLogits, y, LossTarget::Const(0.0))
        .unwrap();
    let sq = tape.mul(y, y).unwrap();
    let m = tape.mean(sq).unwrap();
    let a = tape.add(fit, mse).unwrap();
    let b = tape.add(bce, m).unwrap();
    let s = tape.add(a, b).unwrap();
    tape.sum(s).unwrap()
}

fn loss_value(net: &mut TinyNet, x: &Tensor, target: &Tensor) -> f64 {
    let mut tape = Tape::no_grad();
    let xv = tape.constant(x.clone());
    let tv = tape.constant(target.clone());
    let y = net.forward(&mut tape, xv);
    let l = objective(&mut tape, y, tv);
    tape.value(l).item().unwrap() as f64
}

/// Directional derivative along a random direction, in f32: the tape's <grad, u> against
/// (L(p + h u) - L(p - h u)) / 2h with h = 1e-3. f32 rounding of L (~1e-7 relative over a
/// few thousand terms) divided by h gives ~1e-3 absolute noise, so we allow 1e-3 + 1% of
/// the derivative; a dropped or doubled gradient path fails by far more.
#[test]
fn whole_graph_matches_finite_differences() {
    let mut net = TinyNet::new(5);
    let x = randn(&[2, 2, 8, 8], 1);
    let target = randn(&[2, 1, 8, 8], 2);
    let mut tape = Tape::new();
    let xv = tape.leaf(x.clone(), true);
    let tv = tape.constant(target.clone());
    let y = net.forward(&mut tape, xv);
    let l = objective(&mut tape, y, tv);
    let grads = tape.backward(l).unwrap();
    net.arena.accumulate_grads(&grads).unwrap();
    let grad = net.arena.grads().to_vec();
    assert!(grad.iter().all(|g| g.is_finite()));

    let h = 1e-3f32;
    for trial in 0..3 {
        let u = randn(&[grad.len()], 100 + trial);
        let base = net.arena.values().to_vec();
        let analytic: f64 = grad
            .iter()
            .zip(u.as_slice())
            .map(|(g, u)| (g * u) as f64)
            .sum();
        let mut at = |sign: f32| {
            for ((v, b), d) in net
                .arena
                .values_mut()
                .iter_mut()
                .zip(&base)
                .zip(u.as_slice())
            {
                *v = b + sign * h * d;
            }
            loss_value(&mut net, &x, &target)
        };
        let numeric = (at(1.0) - at(-1.0)) / (2.0 * h as f64);
        net.arena.values_mut().copy_from_slice(&base);
        println!("params direction {trial}: analytic {analytic:.6}, numeric {numeric:.6}");
        assert!(
            (analytic - numeric).abs() <= 1e-3 + 1e-2 * analytic.abs(),
            "trial {trial}"
        );
    }

    // The input's gradient, along one direction.
    let gx = grads.get(xv).expect("input asked for a gradient");
    let u = randn(x.dims(), 200);
    let analytic: f64 = gx
        .as_slice()
        .iter()
        .zip(u.as_slice())
        .map(|(g, u)| (g * u) as f64)
        .sum();
    let shifted = |sign: f32| {
        let data = x
            .as_slice()
            .iter()
            .zip(u.as_slice())
            .map(|(a, d)| a + sign * h * d)
            .collect();
        Tensor::from_vec(x.dims(), data).unwrap()
    };
    let numeric = (loss_value(&mut net, &shifted(1.0), &target)
        - loss_value(&mut net, &shifted(-1.0), &target))
        / (2.0 * h as f64);
    println!("input direction: analytic {analytic:.6}, numeric {numeric:.6}");
    assert!((analytic - numeric).abs() <= 1e-3 + 1e-2 * analytic.abs());
}

/// Parameter gradients of one backward pass of `net` on `inputs`, all on one tape.
fn param_grads(net: &mut TinyNet, inputs: &[&Tensor]) -> Vec<f32> {
    let mut tape = Tape::new();
    let mut total = None;
    for x in inputs {
        let xv = tape.constant((*x).clone());
        let y = net.forward(&mut tape, xv);
        let l = tape.mean(y).unwrap();
        total = Some(match total {
            None => l,
            Some(t) => tape.add(t, l).unwrap(),
        });
    }
    let grads = tape.backward(total.unwrap()).unwrap();
    net.arena.zero_grad().unwrap();
    net.arena.accumulate_grads(&grads).unwrap();
    net.arena.grads().to_vec()
}

#[test]
fn several_forwards_before_one_backward_add_their_gradients() {
    let (a, b) = (randn(&[2, 2, 8, 8], 3), randn(&[2, 2, 8, 8], 4));
    let mut net = TinyNet::new(6);
    let both = param_grads(&mut net, &[&a, &b]);
    let only_a = param_grads(&mut net, &[&a]);
    let only_b = param_grads(&mut net, &[&b]);
    for (i, ((s, x), y)) in both.iter().zip(&only_a).zip(&only_b).enumerate() {
        assert!(
            (s - (x + y)).abs() <= 1e-5 * (1.0 + s.abs()),
            "param scalar {i}: {s} vs {x} + {y}"
        );
    }
    // Each call normalised with its own batch statistics and updated the running stats once.
    let mut fresh = TinyNet::new(6);
    param_grads(&mut fresh, &[&a]);
    param_grads(&mut fresh, &[&b]);
    assert_eq!(fresh.bn.channels(), 4);
    assert_ne!(
        fresh.bn.mean.to_vec().unwrap(),
        RunningStats::new(4).mean.to_vec().unwrap()
    );
}

#[test]
fn frozen_network_passes_gradients_but_keeps_none() {
    let x = randn(&[1, 2, 8, 8], 7);
    let run = |frozen: bool| {
        let (mut g, mut d) = (TinyNet::new(8), TinyNet::new(9));
        d.arena.set_requires_grad(!frozen);
        let mut tape = Tape::new();
        let xv = tape.constant(x.clone());
        let fake = g.forward(&mut tape, xv);
        let fake2 = tape.concat(&[fake, fake]).unwrap();
        let score = d.forward(&mut tape, fake2);
        let l = tape
            .loss(LossKind::Mse, score, LossTarget::Const(1.0))
            .unwrap();
        let grads = tape.backward(l).unwrap();
        g.arena.accumulate_grads(&grads).unwrap();
        d.arena.accumulate_grads(&grads).unwrap();
        (g.arena.grads().to_vec(), d.arena.grads().to_vec())
    };
    let (g_frozen, d_frozen) = run(true);
    let (g_free, d_free) = run(false);
    assert!(
        d_frozen.iter().all(|&v| v == 0.0),
        "a frozen network must get no gradient"
    );
    assert!(d_free.iter().any(|&v| v != 0.0));
    assert!(
        g_frozen.iter().any(|&v| v != 0.0),
        "gradients must flow through the frozen network"
    );
    assert_eq!(g_frozen, g_free, "freezing D must not change G's gradients");
}

#[test]
fn detach_blocks_gradients() {
    let mut net = TinyNet::new(10);
    let mut tape = Tape::new();
    let xv = tape.constant(randn(&[1, 2, 8, 8], 11));
    let y = net.forward(&mut tape, xv);
    let y = tape.detach(y);
    let w = tape.leaf(randn(&[1, 1, 8, 8], 12), true);
    let prod = tape.mul(y, w).unwrap();
    let l = tape.sum(prod).unwrap();
    let grads = tape.backward(l).unwrap();
    net.arena.accumulate_grads(&grads).unwrap();
    assert!(net.arena.grads().iter().all(|&v| v == 0.0));
    assert_eq!(grads.get(w).unwrap().as_slice(), tape.value(y).as_slice());
}

#[test]
fn no_grad_tape_records_nothing() {
    let mut net = TinyNet::new(13);
    let mut tape = Tape::no_grad();
    let xv = tape.leaf(randn(&[1, 2, 8, 8], 14), true);
    let y = net.forward(&mut tape, xv);
    let l = tape.mean(y).unwrap();
    assert!(!tape.requires_grad(xv) && !tape.requires_grad(y) && !tape.requires_grad(l));
    let grads = tape.backward(l).unwrap();
    assert!(grads.get(xv).is_none());
    assert_eq!(grads.params().count(), 0);
}

#[test]
fn bad_shapes_are_clear_errors() {
    let mut tape = Tape::new();
    let x = tape.constant(Tensor::zeros([1, 3, 8, 8]));
    let w = tape.constant(Tensor::zeros([4, 2, 3, 3]));
    let msg = tape
        .conv(x, w, None, ConvOptions::new(1, 1))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("conv:") && msg.contains("[1, 3, 8, 8]") && msg.contains("[4, 2, 3, 3]"),
        "{msg}"
    );

    let big = tape.constant(Tensor::zeros([1, 3, 9, 9]));
    let msg = tape.concat(&[x, big]).unwrap_err().to_string();
    assert!(
        msg.starts_with("concat:") && msg.contains("[1, 3, 9, 9]"),
        "{msg}"
    );

    let small = tape.constant(Tensor::zeros([1, 1, 2, 2]));
    let msg = tape
        .pad(small, PadMode::Reflect, 3)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("pad:") && msg.contains("[1, 1, 2, 2]"),
        "{msg}"
    );

    let wt = tape.constant(Tensor::zeros([3, 2, 3, 3]));
    let msg = tape
        .conv_transpose(x, wt, None, ConvOptions::new(2, 1).with_output_padding(2))
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("conv_transpose:") && msg.contains("output_padding"),
        "{msg}"
    );

    let mut stats = RunningStats::new(5);
    let msg = tape
        .batch_norm(x, None, &mut stats, true)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("batch_norm:"), "{msg}");

    assert!(matches!(tape.backward(x), Err(Error::Autograd(_))));
    let t = tape.constant(Tensor::zeros([1, 3, 8, 7]));
    assert!(
        tape.loss(LossKind::L1, x, LossTarget::Var(t))
            .unwrap_err()
            .to_string()
            .starts_with("loss:")
    );
}

/// A norm fused with the activation after it (`*_norm_then`, what the networks record) gives
/// bit for bit the values and gradients of the two ops recorded one after the other: the
/// same f32 expressions, with act' taken from the output (for the ReLU family y > 0 exactly
/// where the norm's output is > 0).
#[test]
fn norm_fused_with_its_activation_equals_the_two_ops() {
    use mrgan::ops::elementwise::Activation;
    let x = randn(&[2, 3, 5, 4], 11);
    let (gamma, beta) = (randn(&[3], 12), randn(&[3], 13));
    let weight = randn(&[2, 3, 5, 4], 14);
    for act in [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Tanh,
    ] {
        for batch_norm in [false, true] {
            let run = |fused: bool| {
                let mut tape = Tape::new();
                let xv = tape.leaf(x.clone(), true);
                let affine = Affine {
                    gamma: tape.leaf(gamma.clone(), true),
                    beta: tape.leaf(beta.clone(), true),
                };
                let mut stats = RunningStats::new(3);
                let fused_act = fused.then_some(act);
                let mut y = if batch_norm {
                    tape.batch_norm_then(xv, Some(affine), &mut stats, true, fused_act)
                } else {
                    tape.instance_norm_then(xv, Some(affine), fused_act)
                }
                .unwrap();
                if !fused {
                    y = tape.activation(y, act).unwrap();
                }
                let w = tape.constant(weight.clone());
                let weighted = tape.mul(y, w).unwrap();
                let loss = tape.sum(weighted).unwrap();
                let grads = tape.backward(loss).unwrap();
                let grad = |v| grads.get(v).unwrap().to_vec().unwrap();
                [
                    tape.value(y).to_vec().unwrap(),
                    grad(xv),
                    grad(affine.gamma),
                    grad(affine.beta),
                    stats.mean.to_vec().unwrap(),
                ]
            };
            assert_eq!(run(true), run(false), "{act:?}, batch norm {batch_norm}");
        }
    }
}

/// `release_since` drops, on a tape that does not record, the values made after the mark,
/// except those kept and parameter leaves; it leaves a recording tape alone.
#[test]
fn release_since_drops_only_later_unkept_values() {
    let mut arena = ParamArena::new();
    let w = arena.add("w", [3], ParamRole::Weight);
    for recording in [false, true] {
        let mut tape = if recording {
            Tape::new()
        } else {
            Tape::no_grad()
        };
        let before = tape.constant(Tensor::full([4], 1.0));
        let mark = tape.mark();
        let p = tape.param(&arena, w).unwrap();
        let a = tape.constant(Tensor::full([5], 2.0));
        let b = tape.constant(Tensor::full([6], 3.0));
        let held = tape.held_bytes();
        assert_eq!(held, (4 + 3 + 5 + 6) * 4);
        tape.release_since(mark, &[b]);
        let expected = if recording { held } else { (4 + 3 + 6) * 4 };
        assert_eq!(tape.held_bytes(), expected, "recording {recording}");
        assert_eq!(tape.value(before).dims(), [4]);
        assert_eq!(tape.value(b).dims(), [6]);
        // The parameter's cached leaf stays usable.
        assert_eq!(tape.param(&arena, w).unwrap(), p);
        assert_eq!(tape.value(p).dims(), [3]);
        if !recording {
            let read =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tape.value(a).numel()));
            assert!(read.is_err(), "a released value was readable");
        }
    }
}
