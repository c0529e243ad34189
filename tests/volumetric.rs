//! The volumetric CycleGAN: 3D networks' sizes and shapes, exact sliding-window reassembly,
//! train -> predict -> eval on phantom volumes through the binary, and on the real subjects.

use std::path::Path;

mod common;
use common::mrgan;

use mrgan::Tensor;
use mrgan::autograd::Tape;
use mrgan::data::nifti::ReadOptions;
use mrgan::infer::sliding::{Blend, SlidingWindow, run, starts, window_count};
use mrgan::nn::layers::{Mode, NormKind};
use mrgan::nn::nets::{
    DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig, build_discriminator,
    build_generator,
};

#[test]
fn parameter_counts_follow_the_layer_tables() {
    // Generator (1 -> 1, ngf 64, instance norm so every conv has a bias), from the spec's
    // table: stem k7, two k3 downsamplings, 9 blocks of two k3 convs, two k3 transposed, head k7.
    let conv = |cin: usize, cout: usize, k: usize| cout * cin * k * k * k + cout;
    let expected_g = conv(1, 64, 7)
        + conv(64, 128, 3)
        + conv(128, 256, 3)
        + 18 * conv(256, 256, 3)
        + conv(256, 128, 3)
        + conv(128, 64, 3)
        + conv(64, 1, 7);
    let g = build_generator(&GeneratorConfig {
        arch: GeneratorArch::parse("resnet3d_9blocks").unwrap(),
        input_nc: 1,
        output_nc: 1,
        ngf: 64,
        norm: NormKind::Instance,
        dropout: false,
    });
    assert_eq!(g.arena().len(), expected_g);
    assert_eq!(
        expected_g, 34_111_489,
        "about 34.1 M, as the reference notes say"
    );
    let expected_d =
        conv(1, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4) + conv(256, 512, 4) + conv(512, 1, 4);
    let d = build_discriminator(&DiscriminatorConfig {
        arch: DiscriminatorArch::NLayer3d { n_layers: 3 },
        input_nc: 1,
        ndf: 64,
        norm: NormKind::Instance,
    });
    assert_eq!(d.arena().len(), expected_d);
    assert_eq!(expected_d, 11_047_873, "about 11.0 M");
}

#[test]
fn shapes_of_the_3d_networks() {
    let mut d = build_discriminator(&DiscriminatorConfig {
        arch: DiscriminatorArch::NLayer3d { n_layers: 3 },
        input_nc: 1,
        ndf: 2,
        norm: NormKind::Instance,
    });
    let mut tape = Tape::no_grad();
    // A 128 x 128 x 64 patch (x, y, z) is the tensor [1, 1, 64, 128, 128].
    let x = tape.constant(Tensor::full([1, 1, 64, 128, 128], 0.1));
    let y = d.forward(&mut tape, x, &Mode::inference(true)).unwrap();
    assert_eq!(
        tape.value(y).dims(),
        [1, 1, 6, 14, 14],
        "14 x 14 x 6 patch map"
    );
    for pad in ["resnet3d_2blocks", "resnet3d_2blocks_reflect"] {
        let mut g = build_generator(&GeneratorConfig {
            arch: GeneratorArch::parse(pad).unwrap(),
            input_nc: 1,
            output_nc: 1,
            ngf: 2,
            norm: NormKind::Instance,
            dropout: false,
        });
        let x = tape.constant(Tensor::full([2, 1, 8, 12, 16], 0.2));
        let y = g.forward(&mut tape, x, &Mode::inference(true)).unwrap();
        assert_eq!(tape.value(y).dims(), [2, 1, 8, 12, 16], "{pad}");
    }
}

/// An identity generator gives back the input exactly, on the CPU and (with a GPU, or the
/// emulated one) on the device, where the volume stays and kernels cut and blend the windows
/// (`cuda_parity` compares the two blends of a non-linear generator).
#[test]
fn sliding_window_reassembly_is_exact() {
    assert_eq!(starts(240, 128, 32), vec![0, 32, 64, 96, 112]);
    assert_eq!(starts(155, 64, 32), vec![0, 32, 64, 91]);
    assert_eq!(starts(10, 16, 4), vec![0]);
    let devices = common::test_devices();
    for dims in [[13usize, 9, 7], [5, 4, 3], [16, 16, 8], [17, 23, 11]] {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 333.0 - 1.3)
            .collect();
        for stride in [[1, 1, 1], [3, 5, 2], [8, 8, 4], [16, 16, 8]] {
            for blend in [Blend::Average, Blend::Gaussian] {
                let opts = SlidingWindow {
                    patch: [8, 8, 4],
                    stride,
                    blend,
                    batch: 3,
                };
                let case = format!("dims {dims:?} stride {stride:?} {blend:?}");
                for device in &devices {
                    let mut calls = 0;
                    let mut reports = Vec::new();
                    let out = run(
                        &data,
                        dims,
                        -1.0,
                        &opts,
                        device,
                        |patches| {
                            calls += 1;
                            assert!(patches.dims()[0] <= 3);
                            assert_eq!(patches.device(), *device);
                            Ok(patches)
                        },
                        &mut |done, all| reports.push((done, all)),
                    )
                    .unwrap();
                    // One progress report per batch of at most 3 windows, ending at all of them.
                    let windows = window_count(dims, &opts);
                    assert_eq!(calls, windows.div_ceil(3), "{case}");
                    assert_eq!(reports.len(), calls, "{case}");
                    assert_eq!(reports.last(), Some(&(windows, windows)), "{case}");
                    assert!(
                        out == data,
                        "{case} on {}: identity not exact",
                        device.describe()
                    );
                }
            }
        }
    }
}

#[test]
fn cyclegan3d_on_phantoms_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = |x: &Path| x.display().to_string();
    mrgan(&[
        "phantom",
        "--out",
        &p(&data),
        "--subjects",
        "3",
        "--size",
        "24,20,12",
        "--spacing",
        "4",
    ]);
    let val = dir.path().join("val.txt");
    std::fs::write(&val, "phantom-002\n").unwrap();
    let run = dir.path().join("run");
    let log = mrgan(&[
        "train",
        "--model",
        "cyclegan3d",
        "--data",
        &p(&data),
        "--a",
        "t1",
        "--b",
        "t2",
        "--run",
        &p(&run),
        "--val-list",
        &p(&val),
        "--net-g",
        "resnet3d_2blocks",
        "--ngf",
        "2",
        "--ndf",
        "2",
        "--n-layers-d",
        "1",
        "--patch",
        "16,16,8",
        "--patches-per-epoch",
        "4",
        "--batch-size",
        "2",
        "--n-epochs",
        "1",
        "--n-epochs-decay",
        "1",
        "--stride-inplane",
        "8",
        "--stride-layer",
        "4",
        // On a GPU (the emulated one in CI) every conv shape's launch is picked by timing;
        // on the CPU the flag only says it has nothing to tune.
        "--autotune",
    ]);
    assert!(
        log.contains("epoch 2/2") && log.contains("val PSNR"),
        "{log}"
    );
    let out = dir.path().join("pred");
    for direction in ["AtoB", "BtoA"] {
        let name = if direction == "AtoB" { "t1" } else { "t2" };
        mrgan(&[
            "predict",
            "--run",
            &p(&run),
            "--direction",
            direction,
            "--input",
            &p(&data),
            "--input-name",
            name,
            "--output",
            &p(&out),
        ]);
        for s in ["phantom-000", "phantom-002"] {
            let (_, pred) = common::read_prediction(
                &data.join(s).join(format!("{name}.nii.gz")),
                &out.join(s).join(format!("{name}.nii.gz")),
                &ReadOptions::default(),
            );
            assert!(pred.data.iter().all(|v| v.is_finite()));
        }
    }
    // More windows per generator call give the same volume: every window is normalised on
    // its own (instance norm), so only round-off in the batched convs may differ.
    let batched = dir.path().join("pred-batched");
    mrgan(&[
        "predict",
        "--run",
        &p(&run),
        "--input",
        &p(&data),
        "--input-name",
        "t1",
        "--output",
        &p(&batched),
        "--window-batch",
        "5",
    ]);
    let read = |root: &Path| {
        common::read_prediction(
            &data.join("phantom-001").join("t1.nii.gz"),
            &root.join("phantom-001").join("t1.nii.gz"),
            &ReadOptions::default(),
        )
        .1
        .data
    };
    let (two, five) = (read(&out), read(&batched));
    let worst = common::max_abs_difference(&two, &five);
    let range = two.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        worst <= 1e-4 * range.max(1.0),
        "--window-batch 5 differs by {worst}"
    );
    let table = mrgan(&[
        "eval",
        "--pred",
        &p(&out),
        "--pred-name",
        "t1",
        "--real",
        &p(&data),
        "--real-name",
        "t2",
    ]);
    assert!(table.contains("mean +- std (3 subjects)"), "{table}");
}

#[test]
fn trilinear_resampling() {
    use mrgan::data::resample::{dims_for_spacing, resample};
    assert_eq!(
        dims_for_spacing([240, 240, 155], [1.0, 1.0, 1.0], [1.6, 1.6, 1.6]),
        [150, 150, 97]
    );
    let dims = [9, 7, 5];
    let n: usize = dims.iter().product();
    let constant = vec![3.25f32; n];
    assert!(
        resample(&constant, dims, [13, 4, 8])
            .iter()
            .all(|&v| v == 3.25)
    );
    // A linear ramp along x is reproduced exactly between sample points (trilinear is exact
    // on linear functions away from the clamped edges).
    let ramp: Vec<f32> = (0..n).map(|i| (i % 9) as f32).collect();
    let same = resample(&ramp, dims, dims);
    assert_eq!(same, ramp);
    let up = resample(&ramp, dims, [18, 7, 5]);
    assert_eq!(
        up[3], 1.25,
        "output voxel 3 samples x = 3.5 * 0.5 - 0.5 = 1.25"
    );
    let back = resample(&up, [18, 7, 5], dims);
    let err = back
        .iter()
        .zip(&ramp)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        err <= 0.25 + 1e-6,
        "up and down again: max error {err} (edges are clamped)"
    );
}

/// Real data (skips without `../shared/data`): a small 3D CycleGAN T1 <-> T2 (resnet3d_2blocks,
/// ngf = ndf = 8, 32 x 32 x 16 patches at 2 mm, 12 epochs of 64 patches: about 3.5 min on
/// two cores) trained on the three training subjects, then the test subject
/// BraTS-GLI-00001-000, never trained on, predicted whole by sliding windows and resampled
/// back to 1 mm: the output keeps the input's header and shape, and beats the identity
/// baseline's PSNR (measured 24.29 dB against 23.71 on the development VM).
#[test]
fn real_data_cyclegan3d_beats_identity() {
    let Some(root) = common::real_data() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The test subject alone, as a folder for `predict`.
    let test = dir.path().join("test");
    std::fs::create_dir_all(test.join("BraTS-GLI-00001-000")).unwrap();
    std::fs::copy(
        root.join("BraTS-GLI-00001-000/t1.nii.gz"),
        test.join("BraTS-GLI-00001-000/t1.nii.gz"),
    )
    .unwrap();
    let p = |x: &Path| x.display().to_string();
    let run = common::train_on_training_subjects(
        &root,
        dir.path(),
        "cyclegan3d",
        &[
            "--net-g",
            "resnet3d_2blocks",
            "--ngf",
            "8",
            "--ndf",
            "8",
            "--n-layers-d",
            "2",
            "--patch",
            "32,32,16",
            "--patches-per-epoch",
            "64",
            "--batch-size",
            "2",
            "--n-epochs",
            "8",
            "--n-epochs-decay",
            "4",
            "--spacing",
            "2,2,2",
            "--stride-inplane",
            "16",
            "--stride-layer",
            "8",
            "--val-every",
            "0",
        ],
    );
    let out = dir.path().join("pred");
    mrgan(&[
        "predict",
        "--run",
        &p(&run),
        "--direction",
        "AtoB",
        "--input",
        &p(&test),
        "--input-name",
        "t1",
        "--output",
        &p(&out),
    ]);
    let pred = out.join("BraTS-GLI-00001-000/t1.nii.gz");
    let (model, identity) = common::score_test_subject_prediction(&root, &pred);
    assert!(
        model.psnr > identity.psnr,
        "PSNR {} does not beat the identity's {}",
        model.psnr,
        identity.psnr
    );
}
