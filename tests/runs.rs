//! Whole runs through the library and the binary: resuming is bitwise exact on the CPU,
//! train -> predict -> eval works on phantom folders, and outputs keep the input's header.

use std::path::Path;
use std::process::Command;

mod common;
use common::mrgan;

use mrgan::data::dataset::paired_subjects;
use mrgan::data::nifti::ReadOptions;
use mrgan::data::phantom::{PhantomSpec, generate};
use mrgan::models::GanMode;
use mrgan::models::cyclegan::CycleLoss;
use mrgan::models::pix2pix::Pix2PixLoss;
use mrgan::nn::init::InitKind;
use mrgan::nn::layers::NormKind;
use mrgan::nn::nets::{DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig};
use mrgan::optim::adam::AdamConfig;
use mrgan::training::{
    DataConfig, ModelKind, NormStats, Run, TrainConfig, fit, load_training_data,
};

fn phantoms(dir: &Path, n: usize) {
    for i in 0..n {
        let spec = PhantomSpec {
            dims: [32, 32, 12],
            spacing: [3.0; 3],
            seed: i as u64,
            ..PhantomSpec::default()
        };
        mrgan::data::phantom::write(&generate(&spec), &dir.join(format!("s{i}"))).unwrap();
    }
}

fn tiny_config(model: ModelKind, root: &Path, epochs: usize) -> TrainConfig {
    let pix = model == ModelKind::Pix2pix;
    let norm = if pix {
        NormKind::Batch
    } else {
        NormKind::Instance
    };
    let arch = if pix {
        GeneratorArch::Unet { num_downs: 5 }
    } else {
        GeneratorArch::Resnet { n_blocks: 2 }
    };
    TrainConfig {
        model,
        generator: GeneratorConfig {
            arch,
            input_nc: 1,
            output_nc: 1,
            ngf: 4,
            norm,
            dropout: pix,
        },
        discriminator: DiscriminatorConfig {
            arch: DiscriminatorArch::NLayer { n_layers: 2 },
            input_nc: if pix { 2 } else { 1 },
            ndf: 4,
            norm,
        },
        pix2pix: Pix2PixLoss::default(),
        cycle: CycleLoss {
            gan_mode: GanMode::Lsgan,
            ..CycleLoss::default()
        },
        pool_size: if pix { 0 } else { 3 },
        adam: AdamConfig::gan(),
        n_epochs: epochs,
        n_epochs_decay: 1,
        batch_size: 2,
        seed: 7,
        init: InitKind::Normal,
        init_gain: 0.02,
        data: DataConfig {
            root: root.to_path_buf(),
            a: "t1".into(),
            b: "t2".into(),
            train_subjects: vec!["s0".into(), "s1".into()],
            val_subjects: vec!["s2".into()],
            axis: 2,
            min_foreground: 50,
            size: [32, 32],
            percentiles: [0.5, 99.5],
            flip: true,
            load_size: Some(36),
            crop_size: Some(32),
        },
        norm_stats: NormStats::Batch,
        val_every: 1,
        save_epoch_freq: 1,
        norm_a: None,
        norm_b: None,
        volumetric: None,
    }
}

/// Trains `epochs` epochs in one go, or stops after `stop_after` and resumes from disk.
fn train(
    model: ModelKind,
    root: &Path,
    run_dir: &Path,
    stop_after: Option<usize>,
) -> Vec<Vec<f32>> {
    let subjects = paired_subjects(
        root,
        "t1",
        "t2",
        Some(&["s0".to_string(), "s1".to_string()]),
    )
    .unwrap();
    let val = paired_subjects(root, "t1", "t2", Some(&["s2".to_string()])).unwrap();
    let mut cfg = tiny_config(model, root, 2);
    let data = load_training_data(&mut cfg, &subjects).unwrap();
    let mut run = Run::create(run_dir, cfg).unwrap();
    if let Some(stop) = stop_after {
        while run.state.epoch < stop {
            let losses = run.train_epoch(&data, |_, _, _| {}).unwrap();
            let val_scores = Some(run.validate(&val).unwrap());
            run.finish_epoch(losses, 0.0, 0.0, val_scores).unwrap();
        }
        drop(run);
        run = Run::open(run_dir, "latest").unwrap();
    }
    fit(&mut run, &data, &val, |_, _, _, _| {}, |_| {}).unwrap();
    run.nets
        .all_mut()
        .iter()
        .map(|t| t.net.arena().values().to_vec())
        .collect()
}

#[test]
fn resuming_is_bitwise_exact() {
    let dir = tempfile::tempdir().unwrap();
    phantoms(&dir.path().join("data"), 3);
    for model in [ModelKind::Pix2pix, ModelKind::Cyclegan] {
        let tag = format!("{model:?}");
        let straight = train(
            model,
            &dir.path().join("data"),
            &dir.path().join(format!("{tag}-straight")),
            None,
        );
        let resumed = train(
            model,
            &dir.path().join("data"),
            &dir.path().join(format!("{tag}-resumed")),
            Some(1),
        );
        assert_eq!(straight.len(), resumed.len());
        for (i, (a, b)) in straight.iter().zip(&resumed).enumerate() {
            assert!(a == b, "{tag}: network {i} differs after resuming");
        }
        let run_dir = dir.path().join(format!("{tag}-straight"));
        for f in [
            "config.json",
            "loss_log.csv",
            "report.html",
            "checkpoints/latest/state.json",
            "checkpoints/best",
            "checkpoints/epoch_003",
        ] {
            assert!(run_dir.join(f).exists(), "{tag}: {f} missing");
        }
        let csv = std::fs::read_to_string(run_dir.join("loss_log.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4, "header + 3 epochs:\n{csv}");
    }
}

#[test]
fn train_predict_eval_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    phantoms(&data, 4);
    let p = |x: &Path| x.display().to_string();
    let val = dir.path().join("val.txt");
    std::fs::write(&val, "s2\n").unwrap();
    for model in ["pix2pix", "cyclegan"] {
        let run = dir.path().join(format!("run-{model}"));
        let net = if model == "pix2pix" {
            "unet_32"
        } else {
            "resnet_2blocks"
        };
        let (data_arg, run_arg, val_arg) = (p(&data), p(&run), p(&val));
        let mut args = vec![
            "train",
            "--model",
            model,
            "--data",
            &data_arg,
            "--a",
            "t1",
            "--b",
            "t2",
            "--run",
            &run_arg,
            "--val-list",
            &val_arg,
            "--exclude",
            "s3",
            "--net-g",
            net,
            "--ngf",
            "4",
            "--ndf",
            "4",
            "--n-epochs",
            "1",
            "--n-epochs-decay",
            "1",
            "--min-foreground",
            "50",
        ];
        // CycleGAN autotuned: on a GPU its residual blocks' convs may take Winograd's
        // transform (on the CPU the flag only says there is nothing to tune).
        if model == "cyclegan" {
            args.push("--autotune");
        }
        let log = mrgan(&args);
        assert!(
            log.contains("epoch 2/2") && log.contains("val PSNR"),
            "{log}"
        );
        if model == "cyclegan" && log.contains("device: cuda") {
            assert!(log.contains("autotuned conv shapes: fprop: "), "{log}");
        }
        let out = dir.path().join(format!("pred-{model}"));
        let directions: &[&str] = if model == "pix2pix" {
            &["AtoB"]
        } else {
            &["AtoB", "BtoA"]
        };
        for dir_arg in directions {
            let name = if *dir_arg == "AtoB" { "t1" } else { "t2" };
            mrgan(&[
                "predict",
                "--run",
                &p(&run),
                "--input",
                &p(&data),
                "--input-name",
                name,
                "--output",
                &p(&out),
                "--direction",
                dir_arg,
                "--suffix",
                "_fake",
            ]);
            for s in ["s0", "s1", "s2", "s3"] {
                let (input, pred) = common::read_prediction(
                    &data.join(s).join(format!("{name}.nii.gz")),
                    &out.join(s).join(format!("{name}_fake.nii.gz")),
                    &ReadOptions::default(),
                );
                assert_eq!(pred.meta.header.pixdim, input.meta.header.pixdim);
                assert!(
                    pred.data
                        .iter()
                        .zip(&input.data)
                        .all(|(p, i)| (*i == 0.0) == (*p == 0.0)),
                    "background stays background"
                );
            }
        }
        let table = mrgan(&[
            "eval",
            "--pred",
            &p(&out),
            "--pred-name",
            "t1_fake",
            "--real",
            &p(&data),
            "--real-name",
            "t2",
        ]);
        assert!(table.contains("mean +- std (4 subjects)"), "{table}");
    }
    // Resuming a finished run trains nothing more; a second create refuses to overwrite.
    let run = dir.path().join("run-pix2pix");
    let out = Command::new(env!("CARGO_BIN_EXE_mrgan"))
        .args([
            "train",
            "--model",
            "pix2pix",
            "--data",
            &p(&data),
            "--a",
            "t1",
            "--b",
            "t2",
            "--run",
            &p(&run),
            "--exclude",
            "s3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a run"));
}

/// Real data (skips without `../shared/data`): pix2pix T1 -> T2 on the three training
/// subjects for two short epochs (unet_64, ngf 16, slices with >= 15000 brain voxels), then
/// the test subject BraTS-GLI-00001-000, never trained on: the output keeps the input's
/// header and shape, and beats the identity baseline's PSNR (T1 scored as the T2).
#[test]
fn real_data_pix2pix_beats_identity() {
    let Some(root) = common::real_data() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = |x: &Path| x.display().to_string();
    let run = common::train_on_training_subjects(
        &root,
        dir.path(),
        "pix2pix",
        &[
            "--net-g",
            "unet_64",
            "--ngf",
            "16",
            "--ndf",
            "16",
            "--n-epochs",
            "2",
            "--n-epochs-decay",
            "0",
            "--batch-size",
            "4",
            "--min-foreground",
            "15000",
            "--val-every",
            "0",
        ],
    );
    let test = root.join("BraTS-GLI-00001-000");
    let out = dir.path().join("pred");
    mrgan(&[
        "predict",
        "--run",
        &p(&run),
        "--input",
        &p(&test.join("t1.nii.gz")),
        "--output",
        &p(&out),
    ]);
    let (model, identity) = common::score_test_subject_prediction(&root, &out.join("t1.nii.gz"));
    assert!(
        model.psnr > identity.psnr,
        "PSNR {} does not beat the identity's {}",
        model.psnr,
        identity.psnr
    );
}

/// `bench kernels --only` times just the rows it names and refuses a text that names none.
/// Needs a device (the emulated one in `scripts/emulated-device-check.sh`, where the dry mode
/// skips the kernels, so the timings mean nothing but the rows are all there).
#[cfg(feature = "cuda")]
#[test]
fn bench_kernels_times_only_the_named_rows() {
    if let Err(why) = mrgan::device::cuda::CudaBackend::shared(0) {
        assert!(
            std::env::var("MRGAN_REQUIRE_GPU").as_deref() != Ok("1"),
            "MRGAN_REQUIRE_GPU=1 but no device: {why}"
        );
        println!("skipped: no CUDA device ({why})");
        return;
    }
    let bench = |only: &str| {
        Command::new(env!("CARGO_BIN_EXE_mrgan"))
            .args([
                "bench", "kernels", "--batch", "1", "--reps", "1", "--only", only,
            ])
            .env("MRGAN_FAKE_CUDA_DRY", "1")
            .output()
            .unwrap()
    };
    let out = bench("patchgan c5");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conv_rows: Vec<&str> = table
        .lines()
        .filter(|l| ["fprop", "dgrad", "wgrad"].iter().any(|p| l.contains(p)))
        .filter(|l| !l.starts_with("floor") && !l.starts_with(' '))
        .collect();
    assert!(!conv_rows.is_empty(), "{table}");
    assert!(
        conv_rows.iter().all(|l| l.starts_with("patchgan c5 ")),
        "{table}"
    );
    assert!(
        !table
            .lines()
            .any(|l| l.contains(" norm ") || l.starts_with("adam")),
        "{table}"
    );
    let out = bench("no such layer");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--only \"no such layer\""), "{err}");
}
