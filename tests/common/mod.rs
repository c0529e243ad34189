//! Helpers shared by the integration tests: fixture loading and tolerance checks.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::PathBuf;

use mrgan::Tensor;
use safetensors::SafeTensors;

/// A safetensors fixture file from `tests/fixtures`, with its case list.
pub struct Fixtures {
    tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
    pub cases: Vec<serde_json::Value>,
    pub torch_version: String,
}

impl Fixtures {
    /// Reads `file` from `$MRGAN_FIXTURES` when set (the GPU bundle carries its fixtures),
    /// else from this crate's `tests/fixtures`.
    pub fn load(file: &str) -> Fixtures {
        let dir = std::env::var_os("MRGAN_FIXTURES").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
            PathBuf::from,
        );
        let path = dir.join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, meta) = SafeTensors::read_metadata(&bytes).expect("fixture header");
        let meta = meta.metadata().clone().expect("fixture metadata");
        let st = SafeTensors::deserialize(&bytes).expect("fixture tensors");
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                assert_eq!(
                    view.dtype(),
                    safetensors::Dtype::F64,
                    "{name} must be float64"
                );
                let data = view
                    .data()
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                (name, (view.shape().to_vec(), data))
            })
            .collect();
        Fixtures {
            tensors,
            cases: serde_json::from_str(&meta["cases"]).expect("cases JSON"),
            torch_version: meta["torch_version"].clone(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn f64(&self, name: &str) -> &[f64] {
        &self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture tensor {name} missing"))
            .1
    }

    pub fn shape(&self, name: &str) -> &[usize] {
        &self.tensors[name].0
    }

    /// The fixture tensor as an f32 engine tensor (inputs are exact in f32).
    pub fn tensor(&self, name: &str) -> Tensor {
        let data = self.f64(name).iter().map(|&v| v as f32).collect();
        Tensor::from_vec(self.shape(name), data).unwrap()
    }

    /// Cases whose `op` is `op`.
    pub fn cases_of(&self, op: &str) -> Vec<&serde_json::Value> {
        let found: Vec<_> = self.cases.iter().filter(|c| c["op"] == op).collect();
        assert!(!found.is_empty(), "no fixture cases for op {op}");
        found
    }
}

/// Asserts `|a - e| <= atol + rtol * |e|` elementwise; prints the worst errors either way.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f64], atol: f64, rtol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut worst_abs: f64 = 0.0;
    let mut worst_ratio: f64 = 0.0;
    let mut first_bad = None;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (a as f64 - e).abs();
        let allowed = atol + rtol * e.abs();
        worst_abs = worst_abs.max(err);
        worst_ratio = worst_ratio.max(err / allowed);
        if err > allowed && first_bad.is_none() {
            first_bad = Some((i, a, e));
        }
    }
    println!(
        "{what}: max abs err {worst_abs:.3e} ({:.1}% of tolerance)",
        100.0 * worst_ratio
    );
    if let Some((i, a, e)) = first_bad {
        panic!("{what}: element {i} is {a}, expected {e} (atol {atol}, rtol {rtol})");
    }
}

/// Conv geometries the kernel tests share (`cuda_parity`, `kernel_emulation`): odd 2D and 3D
/// shapes, stride 2, padding, batch 2, c_out that cuts 64-wide tiles (5, 6, 70, 128) and the
/// geometry of a transposed conv.
pub fn conv_test_geometries() -> Vec<mrgan::ops::conv::ConvGeometry> {
    use mrgan::Shape;
    use mrgan::ops::conv::{ConvGeometry, ConvOptions};
    use mrgan::ops::pad::PadMode::{self, Reflect, Replicate, Zero};
    // input dims, weight dims, stride, padding, padding mode, output padding, transposed
    type Case<'a> = (&'a [usize], &'a [usize], usize, usize, PadMode, usize, bool);
    // The CUDA tiled kernels' fast path (kernels/conv.cu, `Slice::uniform`) needs channel
    // counts in multiples of 16 for fprop and dgrad (cases 2, 3, 12 and 19; dgrad also 8) and
    // output rows of 16 or more for wgrad (2, 3, 8, 12 and 19 to 21); the others take the
    // general one. Case 8 is the U-Net's first layer in small (one channel, 4 x 4 at stride
    // 2). Cases 8 to 11 are thin (one channel on fprop's or dgrad's result side): 2D and 3D,
    // stride 1 and 2, the last a transposed conv with output padding. Cases 12 to 18 pad with
    // reflection or replication: 12 to 16 as the ResNet generators (stride 1, 2p + 1 taps),
    // whose dgrad the kernels fold, 15 and 16 thin on one side (padded explicitly there);
    // 17 (stride 2) and 18 (an input of 2p + 1) padded explicitly. Cases 19 to 21 have
    // output rows of 16 or more positions but not a multiple of 16, and batch 2: wgrad's K
    // tiles cross rows, planes (21) and images mid-tile, at stride 1 with an even kernel (19,
    // the PatchGAN's 4 x 4), stride 2 (20) and in 3D (21).
    let cases: [Case; 22] = [
        (&[2, 3, 9, 7], &[5, 3, 3, 3], 1, 1, Zero, 0, false),
        (&[2, 4, 17, 16], &[6, 4, 4, 4], 2, 1, Zero, 0, false),
        (&[1, 64, 64, 64], &[128, 64, 3, 3], 2, 1, Zero, 0, false),
        (&[1, 16, 3, 4, 16], &[16, 16, 3, 3, 3], 1, 1, Zero, 0, false),
        (&[1, 3, 11, 13], &[70, 3, 1, 1], 1, 0, Zero, 0, false),
        (&[2, 2, 7, 6, 5], &[3, 2, 3, 3, 3], 2, 1, Zero, 0, false),
        (&[2, 6, 5, 4], &[6, 3, 3, 3], 2, 1, Zero, 1, true),
        (&[1, 4, 3, 4, 3], &[4, 2, 3, 3, 3], 2, 1, Zero, 1, true),
        (&[2, 1, 16, 32], &[16, 1, 4, 4], 2, 1, Zero, 0, false),
        (&[2, 5, 9, 10], &[1, 5, 3, 3], 1, 1, Zero, 0, false),
        (&[1, 3, 6, 7, 5], &[1, 3, 3, 3, 3], 2, 1, Zero, 0, false),
        (&[2, 4, 3, 4, 3], &[4, 1, 3, 3, 3], 2, 1, Zero, 1, true),
        (&[1, 16, 6, 16], &[16, 16, 3, 3], 1, 1, Reflect, 0, false),
        (&[2, 3, 9, 8], &[5, 3, 7, 7], 1, 3, Reflect, 0, false),
        (
            &[1, 4, 5, 4, 6],
            &[6, 4, 3, 3, 3],
            1,
            1,
            Replicate,
            0,
            false,
        ),
        (
            &[1, 3, 8, 9, 8],
            &[1, 3, 7, 7, 7],
            1,
            3,
            Replicate,
            0,
            false,
        ),
        (&[1, 1, 9, 10], &[4, 1, 7, 7], 1, 3, Reflect, 0, false),
        (&[2, 3, 9, 8], &[4, 3, 3, 3], 2, 1, Reflect, 0, false),
        (&[1, 2, 3, 5], &[3, 2, 3, 3], 1, 1, Reflect, 0, false),
        (&[2, 16, 4, 18], &[16, 16, 4, 4], 1, 1, Zero, 0, false),
        (&[2, 3, 5, 37], &[5, 3, 4, 4], 2, 1, Zero, 0, false),
        (&[2, 3, 3, 2, 17], &[4, 3, 3, 3, 3], 1, 1, Zero, 0, false),
    ];
    cases
        .into_iter()
        .map(|(x, w, stride, pad, mode, out_pad, transposed)| {
            let opts = ConvOptions::new(stride, pad)
                .with_pad_mode(mode)
                .with_output_padding(out_pad);
            let (xs, ws) = (Shape::new(x), Shape::new(w));
            if transposed {
                ConvGeometry::conv_transpose("test", &xs, &ws, opts).unwrap()
            } else {
                ConvGeometry::conv("test", &xs, &ws, opts).unwrap()
            }
        })
        .collect()
}

/// The largest |a - b| over two equally long runs of values.
pub fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared runs differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Deterministic test values in [-3, 3) (the CPU dropout hash), for the kernel tests.
pub fn kernel_test_values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| mrgan::ops::elementwise::cpu::uniform_at(seed, i as u64) * 6.0 - 3.0)
        .collect()
}

/// GEMM sizes (M, N, K) for the dense GEMM kernel's tests: below, at and across the 128 x 128
/// tile and the 16-deep K step.
pub const GEMM_TEST_SIZES: [(usize, usize, usize); 3] = [(1, 1, 1), (70, 90, 37), (130, 257, 300)];

/// C = A B for row-major A [m, k], B [k, n], summed in f64: the dense GEMM kernel's reference.
pub fn reference_gemm((m, n, k): (usize, usize, usize), a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum::<f64>() as f32;
        }
    }
    c
}

/// The parts of a channel concat for the kernel tests: one `images` x c x `spatial` tensor
/// per channel count c.
pub fn concat_test_parts(images: usize, spatial: usize, channels: &[usize]) -> Vec<Vec<f32>> {
    channels
        .iter()
        .zip(10..)
        .map(|(&c, seed)| kernel_test_values(images * c * spatial, seed))
        .collect()
}

/// The output of `act` (None: the identity) applied to a norm's output `z`, and the gradient
/// that reaches the norm through it from `dy`: the CPU reference of a norm fused with the
/// activation that follows it.
pub fn fused_activation(
    z: &[f32],
    dy: &[f32],
    act: Option<mrgan::ops::elementwise::Activation>,
) -> (Vec<f32>, Vec<f32>) {
    use mrgan::ops::elementwise::cpu;
    match act {
        None => (z.to_vec(), dy.to_vec()),
        Some(act) => {
            let (mut y, mut dz) = (vec![0.0; z.len()], vec![0.0; z.len()]);
            cpu::activate(z, act, &mut y);
            cpu::activate_backward(dy, z, &y, act, &mut dz);
            (y, dz)
        }
    }
}

/// Inputs of norm case `k` with N, C, S = `n`, `c`, `s`, shared by the kernel tests:
/// x (offset from zero so the mean matters), dy, gamma near 1, beta.
pub fn norm_test_inputs(k: usize, n: usize, c: usize, s: usize) -> [Vec<f32>; 4] {
    let v = kernel_test_values;
    let k = k as u64;
    [
        v(n * c * s, 50 + k).iter().map(|v| 2.0 * v + 0.5).collect(),
        v(n * c * s, 60 + k),
        v(c, 70 + k).iter().map(|v| 1.0 + 0.1 * v).collect(),
        v(c, 80 + k),
    ]
}

/// Padding cases shared by the kernel tests, 6 planes each: 2D reflect-3 as in the ResNet
/// generator, 3D symmetric, 3D uneven (including zero before or after). With each, whether
/// reflection is defined (every pad below its axis' size, as PyTorch requires).
pub fn pad_test_geometries() -> Vec<(mrgan::ops::pad::cpu::PadGeometry, bool)> {
    let cases = [
        ([1usize, 9, 10], [[0usize, 0], [3, 3], [3, 3]]),
        ([5, 6, 7], [[1, 1], [2, 2], [1, 1]]),
        ([4, 5, 6], [[2, 0], [0, 3], [1, 2]]),
    ];
    cases
        .into_iter()
        .map(|(input, pads)| {
            let reflect_ok = (0..3).all(|a| pads[a].iter().all(|&p| p < input[a]));
            let g = mrgan::ops::pad::cpu::PadGeometry {
                planes: 6,
                input,
                pads,
            };
            (g, reflect_ok)
        })
        .collect()
}

/// What the Adam kernel tests follow: starting values, the config and, per step, the
/// gradient and the parameters after the CPU optimizer's step.
pub struct AdamTrajectory {
    pub start: Vec<f32>,
    pub config: mrgan::optim::adam::AdamConfig,
    pub steps: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The CPU Adam (`optim::adam`) on one parameter of `n` values from `kernel_test_values`,
/// with weight decay 0.01 and the GAN betas, for `steps` steps with gradients
/// `kernel_test_values(n, 10 + t)`.
pub fn cpu_adam_trajectory(n: usize, steps: usize) -> AdamTrajectory {
    use mrgan::nn::params::{ParamArena, ParamRole};
    use mrgan::optim::adam::{Adam, AdamConfig};
    let mut arena = ParamArena::new();
    let id = arena.add("p", [n], ParamRole::Weight);
    let start = kernel_test_values(n, 4);
    arena.value_mut(id).copy_from_slice(&start);
    let cfg = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::gan()
    };
    let mut adam = Adam::new(cfg, &arena);
    let mut trajectory = Vec::new();
    for t in 1..=steps {
        let g = kernel_test_values(n, 10 + t as u64);
        // The arena's gradient is g: d/dp sum(p * g).
        let mut tape = mrgan::autograd::Tape::new();
        let pv = tape.param(&arena, id).unwrap();
        let gv = tape.constant(Tensor::from_vec([n], g.clone()).unwrap());
        let prod = tape.mul(pv, gv).unwrap();
        let l = tape.sum(prod).unwrap();
        arena.zero_grad().unwrap();
        arena.accumulate_grads(&tape.backward(l).unwrap()).unwrap();
        adam.step(&mut arena, cfg.lr).unwrap();
        trajectory.push((g, arena.values().to_vec()));
    }
    AdamTrajectory {
        start,
        config: cfg,
        steps: trajectory,
    }
}

/// Runs the built `mrgan` binary: whether it succeeded, and its stdout + stderr.
pub fn mrgan_status(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrgan"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs the built `mrgan` binary, which must succeed; returns its stdout + stderr.
pub fn mrgan(args: &[&str]) -> String {
    let (ok, text) = mrgan_status(args);
    assert!(ok, "mrgan {args:?}:\n{text}");
    text
}

/// `../shared/data/brats-t1t2` (the real subjects), or None after printing why a test that
/// needs it is skipped.
pub fn real_data() -> Option<PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/brats-t1t2");
    if root.is_dir() {
        Some(root)
    } else {
        println!("skipped: {} is absent", root.display());
        None
    }
}

/// The training subjects of the data's suggested split, one per line (`--train-list`); the
/// test subject BraTS-GLI-00001-000 is never trained on.
pub const TRAIN_SUBJECTS: &str =
    "TCGA-DU-7294\nBraTS-MET-00110-000\nBraTS20_Training_001-brainles\n";

/// Trains `model` T1 -> T2 on the training subjects under `root` through the binary, with
/// `args` added; returns the run folder (inside `dir`).
pub fn train_on_training_subjects(
    root: &std::path::Path,
    dir: &std::path::Path,
    model: &str,
    args: &[&str],
) -> PathBuf {
    let list = dir.join("train.txt");
    std::fs::write(&list, TRAIN_SUBJECTS).unwrap();
    let run = dir.join("run");
    let (root, run_arg, list) = (
        root.display().to_string(),
        run.display().to_string(),
        list.display().to_string(),
    );
    let mut all = vec![
        "train",
        "--model",
        model,
        "--data",
        &root,
        "--a",
        "t1",
        "--b",
        "t2",
        "--run",
        &run_arg,
        "--train-list",
        &list,
    ];
    all.extend_from_slice(args);
    mrgan(&all);
    run
}

/// Reads an input volume and its prediction and checks that the prediction kept the input's
/// shape and affine; returns (input, prediction).
pub fn read_prediction(
    input: &std::path::Path,
    pred: &std::path::Path,
    opts: &mrgan::data::nifti::ReadOptions,
) -> (mrgan::data::volume::Volume, mrgan::data::volume::Volume) {
    use mrgan::data::nifti::read;
    let (input, pred) = (read(input, opts).unwrap(), read(pred, opts).unwrap());
    assert_eq!(pred.dims, input.dims);
    assert_eq!(pred.stored_affine(), input.stored_affine());
    (input, pred)
}

/// Checks a T1 -> T2 prediction of the test subject (`pred`, a NIfTI file) against the data
/// under `root`: the input's shape and header kept; then scores it and the identity
/// baseline (the T1 scored as the T2), prints both and returns (model, identity).
pub fn score_test_subject_prediction(
    root: &std::path::Path,
    pred: &std::path::Path,
) -> (mrgan::metrics::VolumeScores, mrgan::metrics::VolumeScores) {
    use mrgan::data::nifti::{OrientationMode, ReadOptions, read};
    let test = root.join("BraTS-GLI-00001-000");
    let opts = ReadOptions {
        orientation: OrientationMode::AsStored,
        ..Default::default()
    };
    let (input, pred) = read_prediction(&test.join("t1.nii.gz"), pred, &opts);
    assert_eq!(pred.dims, [240, 240, 155]);
    let (h, g) = (&pred.meta.header, &input.meta.header);
    assert_eq!(
        (h.pixdim, h.qform_code, h.sform_code, h.xyzt_units),
        (g.pixdim, g.qform_code, g.sform_code, g.xyzt_units)
    );
    let real = read(&test.join("t2.nii.gz"), &opts).unwrap();
    let scores = |v: &[f32]| {
        mrgan::metrics::evaluate(v, &real.data, real.dims, &Default::default()).unwrap()
    };
    let (model, identity) = (scores(&pred.data), scores(&input.data));
    println!(
        "model PSNR {:.2} dB SSIM {:.4}; identity PSNR {:.2} dB SSIM {:.4}",
        model.psnr, model.ssim, identity.psnr, identity.ssim
    );
    (model, identity)
}

/// The devices a test runs on: the CPU, and with the `cuda` feature GPU 0 when one works
/// (else the test says why the GPU run is skipped, or fails under `MRGAN_REQUIRE_GPU=1`).
pub fn test_devices() -> Vec<mrgan::device::Device> {
    #[allow(unused_mut)] // one device without the cuda feature
    let mut devices = vec![mrgan::device::Device::Cpu];
    #[cfg(feature = "cuda")]
    match mrgan::device::DeviceChoice::Cuda(0).open() {
        Ok(opened) => devices.push(opened.device),
        Err(why) => gpu_missing(&why.to_string()),
    }
    devices
}

/// Says why a GPU test is skipped; under `MRGAN_REQUIRE_GPU=1` (the GPU bundle, the
/// emulated-device check) a missing GPU fails the test instead.
pub fn gpu_missing(why: &str) {
    if std::env::var("MRGAN_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("MRGAN_REQUIRE_GPU=1 but no GPU: {why}");
    }
    println!("GPU run skipped: {why}");
}
