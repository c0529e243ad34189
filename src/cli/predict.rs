//! `mrgan predict`: a trained run's generator on every volume of a file or folder, written
//! as NIfTI with the input's header, in the target modality's intensity units.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use mrgan::data::discover::volumes;
use mrgan::data::nifti::{OutDtype, ReadOptions, read, write};
use mrgan::training::{Direction, NormStats, Run, predict_volume};

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Dir {
    #[value(name = "AtoB")]
    AtoB,
    #[value(name = "BtoA")]
    BtoA,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Stats {
    Batch,
    Running,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run folder written by `mrgan train`.
    #[arg(long)]
    run: PathBuf,
    /// Which checkpoint: latest, best or epoch_<n>.
    #[arg(long, default_value = "latest")]
    checkpoint: String,
    /// AtoB uses G (pix2pix) or G_A; BtoA uses CycleGAN's G_B.
    #[arg(long, value_enum, default_value_t = Dir::AtoB)]
    direction: Dir,
    /// A volume, or a folder of volumes (loose files or subject folders).
    #[arg(long)]
    input: PathBuf,
    /// In subject folders, the modality to translate (e.g. t1).
    #[arg(long)]
    input_name: Option<String>,
    /// Output folder; each output keeps its input's path relative to --input.
    #[arg(long)]
    output: PathBuf,
    /// Appended to each output's file name before `.nii.gz`.
    #[arg(long, default_value = "")]
    suffix: String,
    /// Batch-norm statistics (default: the run's choice, `batch` unless trained otherwise).
    #[arg(long, value_enum)]
    norm_stats: Option<Stats>,
    /// float32 (default), input, uint8, int16, int32, float64.
    #[arg(long, default_value = "float32")]
    out_dtype: OutDtype,
}

/// `name.nii.gz` -> `name<suffix>.nii.gz`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.strip_suffix(".nii.gz") {
        Some(s) => (s.to_string(), ".nii.gz"),
        None => (name.trim_end_matches(".nii").to_string(), ".nii"),
    };
    path.with_file_name(format!("{stem}{suffix}{ext}"))
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let mut run = Run::open(&args.run, &args.checkpoint)
        .with_context(|| format!("loading {}", args.run.display()))?;
    let direction = if args.direction == Dir::AtoB {
        Direction::AtoB
    } else {
        Direction::BtoA
    };
    let stats = match args.norm_stats {
        Some(Stats::Batch) => NormStats::Batch,
        Some(Stats::Running) => NormStats::Running,
        None => run.config.norm_stats,
    };
    let inputs = volumes(&args.input, args.input_name.as_deref())?;
    let bar = ProgressBar::new(inputs.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} volumes, {per_sec}, ETA {eta}")
            .expect("template"),
    );
    for entry in &inputs {
        let vol = read(&entry.path, &ReadOptions::default())?;
        let out = predict_volume(&mut run, &vol, direction, stats)
            .with_context(|| format!("translating {}", entry.path.display()))?;
        let rel = if args.input.is_file() {
            PathBuf::from(entry.path.file_name().expect("a file name"))
        } else {
            entry
                .path
                .strip_prefix(&args.input)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| entry.path.clone())
        };
        let target = with_suffix(&args.output.join(rel), &args.suffix);
        std::fs::create_dir_all(target.parent().expect("output folder"))
            .with_context(|| format!("creating {}", target.display()))?;
        write(&target, &out, args.out_dtype)?;
        let line = format!("{} -> {}", entry.path.display(), target.display());
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}
