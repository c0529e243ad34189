//! `mrgan demo`: the whole workflow on built-in data, no downloads. Generates phantom
//! subjects, trains a small pix2pix T1 -> T2 (`--device`: the GPU when there is one),
//! predicts a held-out subject and scores it against its real T2 next to the identity
//! baseline (the T1 itself).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use mrgan::data::nifti::{OutDtype, ReadOptions, read, write};
use mrgan::data::phantom::{PhantomSpec, generate};
use mrgan::metrics::{EvalOptions, VolumeScores, evaluate};
use mrgan::report::write_atomic;
use mrgan::training::{Direction, Run, predict_volume};

#[derive(Args)]
pub struct DemoArgs {
    /// Output folder (data, run, predictions, summary.json).
    #[arg(long, default_value = "mrgan-demo")]
    out: PathBuf,
    /// Training epochs at full learning rate (then as many again at decaying rate... see --decay).
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Epochs of linear learning-rate decay after --epochs.
    #[arg(long, default_value_t = 8)]
    decay: usize,
    #[command(flatten)]
    device: super::DeviceArg,
}

const SUBJECTS: usize = 8;
const VAL: &str = "phantom-006";
const TEST: &str = "phantom-007";

fn clear(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    Ok(())
}

fn row(name: &str, s: &VolumeScores) {
    println!("{name:<28} {:>8.2} {:>8.4} {:>10.2}", s.psnr, s.ssim, s.mae);
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let (data, run_dir, pred) = (
        args.out.join("data"),
        args.out.join("run"),
        args.out.join("pred"),
    );
    for d in [&data, &run_dir, &pred] {
        clear(d)?;
    }
    println!(
        "1/4 phantom: {SUBJECTS} subjects (64x64x40, 3 mm) in {}",
        data.display()
    );
    for i in 0..SUBJECTS {
        let spec = PhantomSpec {
            dims: [64, 64, 40],
            spacing: [3.0; 3],
            seed: i as u64,
            ..PhantomSpec::default()
        };
        mrgan::data::phantom::write(&generate(&spec), &data.join(format!("phantom-{i:03}")))?;
    }
    let val_list = args.out.join("val.txt");
    write_atomic(&val_list, |w| writeln!(w, "{VAL}")).context("writing the validation list")?;

    println!("2/4 train pix2pix t1 -> t2 (unet_64, ngf/ndf 32, batch 4), {TEST} held out");
    let s = |x: &Path| x.display().to_string();
    let train_args: Vec<String> = [
        "--model",
        "pix2pix",
        "--data",
        &s(&data),
        "--a",
        "t1",
        "--b",
        "t2",
        "--run",
        &s(&run_dir),
        "--val-list",
        &s(&val_list),
        "--exclude",
        TEST,
        "--net-g",
        "unet_64",
        "--ngf",
        "32",
        "--ndf",
        "32",
        "--batch-size",
        "4",
        "--min-foreground",
        "100",
        "--n-epochs",
        &args.epochs.to_string(),
        "--n-epochs-decay",
        &args.decay.to_string(),
        "--val-every",
        "4",
        "--save-epoch-freq",
        "0",
        "--device",
        &args.device.device.to_string(),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    super::train::run(super::train::args_from(&train_args)?)?;

    println!("3/4 predict {TEST}");
    let mut run = Run::open(&run_dir, "latest")?;
    run.to_device(args.device.open()?)?;
    let input = read(&data.join(TEST).join("t1.nii.gz"), &ReadOptions::default())?;
    let real = read(&data.join(TEST).join("t2.nii.gz"), &ReadOptions::default())?;
    let norm_stats = run.config.norm_stats;
    let fake = predict_volume(
        &mut run,
        &input,
        Direction::AtoB,
        norm_stats,
        &mut |_, _| {},
    )?;
    let out_path = pred.join(TEST).join("t1.nii.gz");
    std::fs::create_dir_all(out_path.parent().expect("folder"))?;
    write(&out_path, &fake, OutDtype::Float32)?;

    println!("4/4 evaluate against the real T2 (whole volume, scanner units)");
    let opts = EvalOptions::default();
    let model = evaluate(&fake.data, &real.data, real.dims, &opts)?;
    let identity = evaluate(&input.data, &real.data, real.dims, &opts)?;
    println!("{:<28} {:>8} {:>8} {:>10}", "", "PSNR dB", "SSIM", "MAE");
    row("pix2pix prediction", &model);
    row("identity (T1 copied)", &identity);
    let seconds = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "psnr": model.psnr, "ssim": model.ssim,
        "identity_psnr": identity.psnr, "identity_ssim": identity.ssim,
        "seconds": seconds,
        "prediction": out_path, "report": run_dir.join("report.html"),
    });
    let summary_path = args.out.join("summary.json");
    write_atomic(&summary_path, |w| {
        serde_json::to_writer_pretty(&mut *w, &summary).map_err(std::io::Error::other)
    })?;
    println!(
        "{seconds:.0} s; summary {}, report {}",
        summary_path.display(),
        run_dir.join("report.html").display()
    );
    Ok(())
}
