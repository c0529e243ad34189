//! Golden tests against PyTorch: every op's forward and backward on tiny shapes, Adam
//! trajectories and learning-rate schedules. Fixtures come from
//! `scripts/gen_engine_fixtures.py` (torch computes in float64 from float32-exact inputs).
//!
//! Tolerances: the engine computes in f32 with reductions of at most a few hundred terms of
//! magnitude <= ~10, so absolute errors stay near 1e-6; we allow atol 1e-5 + rtol 1e-4.
//! Data-movement ops (pad, concat) only copy or add a handful of values: atol 1e-6, rtol 1e-6.

mod common;

use common::{Fixtures, assert_close};
use mrgan::autograd::{Tape, Var};
use mrgan::nn::params::{ParamArena, ParamRole};
use mrgan::ops::conv::ConvOptions;
use mrgan::ops::elementwise::Activation;
use mrgan::ops::loss::{LossKind, LossTarget};
use mrgan::ops::norm::{Affine, RunningStats};
use mrgan::ops::pad::PadMode;
use mrgan::optim::adam::{Adam, AdamConfig};
use mrgan::optim::schedule::LrPolicy;
use serde_json::Value;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;
const COPY_ATOL: f64 = 1e-6;
/// Replication padding sums up to ~25 gradients into a corner: allow f32 rounding of the sum.
const COPY_RTOL: f64 = 1e-6;

fn fixtures() -> Fixtures {
    let f = Fixtures::load("engine_ops.safetensors");
    println!("fixtures made with torch {}", f.torch_version);
    f
}

/// Leaves for the named inputs of a case, each asking for its gradient.
fn leaves(tape: &mut Tape, f: &Fixtures, case: &str, names: &[&str]) -> Vec<Var> {
    names
        .iter()
        .map(|n| tape.leaf(f.tensor(&format!("{case}.{n}")), true))
        .collect()
}

/// Runs backward from `sum(y * gy)` and compares y and the gradients of `inputs`.
fn check_case(
    tape: &mut Tape,
    f: &Fixtures,
    case: &str,
    y: Var,
    inputs: &[(&str, Var)],
    atol: f64,
    rtol: f64,
) {
    assert_close(
        &format!("{case} forward"),
        tape.value(y).as_slice(),
        f.f64(&format!("{case}.y")),
        atol,
        rtol,
    );
    let gy = tape.constant(
        f.tensor(&format!("{case}.gy"))
            .reshape(tape.value(y).shape().clone())
            .unwrap(),
    );
    let weighted = tape.mul(y, gy).unwrap();
    let objective = tape.sum(weighted).unwrap();
    let grads = tape.backward(objective).unwrap();
    for (name, v) in inputs {
        let key = format!("{case}.g{name}");
        let g = grads
            .get(*v)
            .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
        assert_close(
            &format!("{case} d{name}"),
            g.as_slice(),
            f.f64(&key),
            atol,
            rtol,
        );
    }
}

fn usize_of(c: &Value, key: &str) -> usize {
    c[key]
        .as_u64()
        .unwrap_or_else(|| panic!("case field {key}")) as usize
}

fn name_of(c: &Value) -> &str {
    c["name"].as_str().unwrap()
}

#[test]
fn conv_and_conv_transpose_match_torch() {
    let f = fixtures();
    for op in ["conv", "conv_transpose"] {
        for c in f.cases_of(op) {
            let case = name_of(c);
            let opts = ConvOptions::new(usize_of(c, "stride"), usize_of(c, "padding"))
                .with_output_padding(usize_of(c, "output_padding"));
            let mut tape = Tape::new();
            let names: &[&str] = if c["bias"] == true {
                &["x", "w", "b"]
            } else {
                &["x", "w"]
            };
            let v = leaves(&mut tape, &f, case, names);
            let y = if op == "conv" {
                tape.conv(v[0], v[1], v.get(2).copied(), opts)
            } else {
                tape.conv_transpose(v[0], v[1], v.get(2).copied(), opts)
            }
            .unwrap();
            let inputs: Vec<(&str, Var)> = names.iter().copied().zip(v).collect();
            check_case(&mut tape, &f, case, y, &inputs, ATOL, RTOL);
        }
    }
}

#[test]
fn batch_norm_matches_torch_including_running_stats() {
    let f = fixtures();
    for c in f.cases_of("batch_norm") {
        let case = name_of(c);
        let training = c["training"] == true;
        let mut tape = Tape::new();
        let v = leaves(&mut tape, &f, case, &["x", "gamma", "beta"]);
        let mut stats = RunningStats::new(f.shape(&format!("{case}.gamma"))[0]);
        stats.mean = f.tensor(&format!("{case}.running_mean_before"));
        stats.var = f.tensor(&format!("{case}.running_var_before"));
        let affine = Some(Affine {
            gamma: v[1],
            beta: v[2],
        });
        let y = tape.batch_norm(v[0], affine, &mut stats, training).unwrap();
        assert_close(
            &format!("{case} running mean"),
            &stats.mean.to_vec().unwrap(),
            f.f64(&format!("{case}.running_mean")),
            ATOL,
            RTOL,
        );
        assert_close(
            &format!("{case} running var"),
            &stats.var.to_vec().unwrap(),
            f.f64(&format!("{case}.running_var")),
            ATOL,
            RTOL,
        );
        check_case(
            &mut tape,
            &f,
            case,
            y,
            &[("x", v[0]), ("gamma", v[1]), ("beta", v[2])],
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn instance_norm_matches_torch() {
    let f = fixtures();
    for c in f.cases_of("instance_norm") {
        let case = name_of(c);
        let mut tape = Tape::new();
        let affine = c["affine"] == true;
        let names: &[&str] = if affine {
            &["x", "gamma", "beta"]
        } else {
            &["x"]
        };
        let v = leaves(&mut tape, &f, case, names);
        let y = tape
            .instance_norm(
                v[0],
                affine.then(|| Affine {
                    gamma: v[1],
                    beta: v[2],
                }),
            )
            .unwrap();
        let inputs: Vec<(&str, Var)> = names.iter().copied().zip(v).collect();
        check_case(&mut tape, &f, case, y, &inputs, ATOL, RTOL);
    }
}

#[test]
fn padding_matches_torch() {
    let f = fixtures();
    for c in f.cases_of("pad") {
        let case = name_of(c);
        let mode = match c["mode"].as_str().unwrap() {
            "zero" => PadMode::Zero,
            "reflect" => PadMode::Reflect,
            "replicate" => PadMode::Replicate,
            m => panic!("unknown pad mode {m}"),
        };
        let mut tape = Tape::new();
        let x = leaves(&mut tape, &f, case, &["x"])[0];
        let y = tape.pad(x, mode, usize_of(c, "amount")).unwrap();
        check_case(&mut tape, &f, case, y, &[("x", x)], COPY_ATOL, COPY_RTOL);
    }
}

#[test]
fn activations_match_torch() {
    let f = fixtures();
    for c in f.cases_of("activation") {
        let case = name_of(c);
        let act = match c["activation"].as_str().unwrap() {
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu(c["slope"].as_f64().unwrap()),
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            a => panic!("unknown activation {a}"),
        };
        let mut tape = Tape::new();
        let x = leaves(&mut tape, &f, case, &["x"])[0];
        let y = tape.activation(x, act).unwrap();
        check_case(&mut tape, &f, case, y, &[("x", x)], ATOL, RTOL);
    }
}

#[test]
fn concat_matches_torch() {
    let f = fixtures();
    let mut tape = Tape::new();
    let v = leaves(&mut tape, &f, "concat", &["a", "b"]);
    let y = tape.concat(&v).unwrap();
    check_case(
        &mut tape,
        &f,
        "concat",
        y,
        &[("a", v[0]), ("b", v[1])],
        COPY_ATOL,
        COPY_RTOL,
    );
}

#[test]
fn arithmetic_and_reductions_match_torch() {
    let f = fixtures();
    for c in f.cases_of("arith") {
        let case = name_of(c);
        let mut tape = Tape::new();
        let binary = f.has(&format!("{case}.b"));
        let names: &[&str] = if binary { &["a", "b"] } else { &["a"] };
        let v = leaves(&mut tape, &f, case, names);
        let y = match c["fn"].as_str().unwrap() {
            "add" => tape.add(v[0], v[1]).unwrap(),
            "mul" => tape.mul(v[0], v[1]).unwrap(),
            "scale" => tape
                .scale(v[0], c["factor"].as_f64().unwrap() as f32)
                .unwrap(),
            "sum" => tape.sum(v[0]).unwrap(),
            "mean" => tape.mean(v[0]).unwrap(),
            other => panic!("unknown arithmetic {other}"),
        };
        let inputs: Vec<(&str, Var)> = names.iter().copied().zip(v).collect();
        check_case(&mut tape, &f, case, y, &inputs, ATOL, RTOL);
    }
}

#[test]
fn losses_match_torch() {
    let f = fixtures();
    for c in f.cases_of("loss") {
        let case = name_of(c);
        let kind = match c["kind"].as_str().unwrap() {
            "l1" => LossKind::L1,
            "mse" => LossKind::Mse,
            "bce_with_logits" => LossKind::BceWithLogits,
            k => panic!("unknown loss {k}"),
        };
        let mut tape = Tape::new();
        let p = leaves(&mut tape, &f, case, &["p"])[0];
        let mut inputs = vec![("p", p)];
        let target = match c["target"].as_f64() {
            Some(t) => LossTarget::Const(t as f32),
            None => {
                let t = leaves(&mut tape, &f, case, &["t"])[0];
                inputs.push(("t", t));
                LossTarget::Var(t)
            }
        };
        let y = tape.loss(kind, p, target).unwrap();
        check_case(&mut tape, &f, case, y, &inputs, ATOL, RTOL);
    }
}

/// Adam's parameters after each of 6 steps match torch.optim.Adam's. Both run in f32; the
/// only differences are the order of f32 roundings, so 1e-6 relative to the parameter plus
/// 1e-7 absolute is allowed (an update is ~lr = 2e-4, so a wrong formula fails by far).
#[test]
fn adam_trajectory_matches_torch() {
    let f = fixtures();
    for c in f.cases_of("adam") {
        let case = name_of(c);
        let p0 = f.tensor(&format!("{case}.p0"));
        let grads = f.f64(&format!("{case}.grads"));
        let after = f.f64(&format!("{case}.after"));
        let n = p0.numel();
        let mut arena = ParamArena::new();
        let id = arena.add("p", [n], ParamRole::Weight);
        arena.value_mut(id).copy_from_slice(p0.as_slice());
        let config = AdamConfig {
            lr: c["lr"].as_f64().unwrap(),
            beta1: c["beta1"].as_f64().unwrap(),
            beta2: c["beta2"].as_f64().unwrap(),
            eps: c["eps"].as_f64().unwrap(),
            weight_decay: c["weight_decay"].as_f64().unwrap(),
        };
        let mut adam = Adam::new(config, &arena);
        for s in 0..usize_of(c, "steps") {
            // Load this step's gradient through the public path: a tape with one parameter.
            let mut tape = Tape::new();
            let pv = tape.param(&arena, id).unwrap();
            let g = mrgan::Tensor::from_vec(
                [n],
                grads[s * n..(s + 1) * n]
                    .iter()
                    .map(|&v| v as f32)
                    .collect(),
            )
            .unwrap();
            let gv = tape.constant(g);
            let prod = tape.mul(pv, gv).unwrap();
            let objective = tape.sum(prod).unwrap();
            arena.zero_grad().unwrap();
            arena
                .accumulate_grads(&tape.backward(objective).unwrap())
                .unwrap();
            adam.step(&mut arena, config.lr).unwrap();
            assert_close(
                &format!("{case} step {}", s + 1),
                arena.value(id),
                &after[s * n..(s + 1) * n],
                1e-7,
                1e-6,
            );
        }
    }
}

#[test]
fn lr_schedules_match_torch() {
    let f = fixtures();
    for c in f.cases_of("lr") {
        let case = name_of(c);
        let policy = match c["policy"].as_str().unwrap() {
            "linear" => LrPolicy::Linear {
                n_epochs: usize_of(c, "n_epochs"),
                n_epochs_decay: usize_of(c, "n_epochs_decay"),
                epoch_count: usize_of(c, "epoch_count"),
            },
            "step" => LrPolicy::Step {
                step_size: usize_of(c, "step_size"),
                gamma: c["gamma"].as_f64().unwrap(),
            },
            "cosine" => LrPolicy::Cosine {
                t_max: usize_of(c, "t_max"),
            },
            p => panic!("unknown policy {p}"),
        };
        let expected = f.f64(&format!("{case}.factors"));
        let got: Vec<f32> = (0..expected.len())
            .map(|k| policy.factor(k) as f32)
            .collect();
        assert_close(case, &got, expected, 1e-7, 1e-6);
    }
}
