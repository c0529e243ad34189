//! `mrgan train`: pix2pix or CycleGAN straight from NIfTI folders.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use mrgan::data::dataset::{SubjectFiles, paired_subjects, subject_list};
use mrgan::data::nifti::{ReadOptions, read};
use mrgan::infer::sliding::Blend;
use mrgan::models::GanMode;
use mrgan::models::cyclegan::CycleLoss;
use mrgan::models::pix2pix::Pix2PixLoss;
use mrgan::nn::init::InitKind;
use mrgan::nn::layers::NormKind;
use mrgan::nn::nets::{DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig};
use mrgan::optim::adam::AdamConfig;
use mrgan::training::{
    DataConfig, ModelKind, NormStats, Run, TrainConfig, TrainingData, VolumetricConfig, fit,
    load_training_data,
};

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Model {
    Pix2pix,
    Cyclegan,
    /// CycleGAN with 3D networks on patches (davidiommi's 3D CycleGAN).
    Cyclegan3d,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Norm {
    Batch,
    Instance,
    None,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Gan {
    Vanilla,
    Lsgan,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Init {
    Normal,
    Xavier,
    Kaiming,
    Orthogonal,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum BlendArg {
    Gaussian,
    Average,
}

fn parse_spacing(s: &str) -> Result<[f32; 3], String> {
    super::parse_xyz(s, |v| v.iter().all(|&x| x > 0.0), "in mm, each above 0")
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Stats {
    Batch,
    Running,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum)]
    model: Model,
    /// Folder of subject folders (or BIDS subjects).
    #[arg(long)]
    data: PathBuf,
    /// Modality of domain A (input), e.g. t1.
    #[arg(long)]
    a: String,
    /// Modality of domain B (target), e.g. t2.
    #[arg(long)]
    b: String,
    /// Run folder for checkpoints, logs, samples and the report.
    #[arg(long)]
    run: PathBuf,
    /// Resume the run in --run from its latest checkpoint.
    #[arg(long = "continue")]
    resume: bool,
    #[command(flatten)]
    device: super::DeviceArg,
    /// Training subjects, one per line (default: every subject not in --val-list / --exclude).
    #[arg(long)]
    train_list: Option<PathBuf>,
    /// Validation subjects, one per line.
    #[arg(long)]
    val_list: Option<PathBuf>,
    /// Subjects never to train on (repeatable), e.g. the test subject.
    #[arg(long)]
    exclude: Vec<String>,
    /// Generator: unet_256, unet_128, resnet_9blocks, resnet_6blocks (default by model).
    #[arg(long)]
    net_g: Option<String>,
    /// Discriminator layers (basic PatchGAN = 3); 0 selects the pixel discriminator.
    #[arg(long, default_value_t = 3)]
    n_layers_d: usize,
    #[arg(long, default_value_t = 64)]
    ngf: usize,
    #[arg(long, default_value_t = 64)]
    ndf: usize,
    /// Norm layers (default: batch for pix2pix, instance for CycleGAN).
    #[arg(long, value_enum)]
    norm: Option<Norm>,
    /// Dropout in the generator (default: on for pix2pix, off for CycleGAN).
    #[arg(long)]
    dropout: Option<bool>,
    /// GAN loss (default: vanilla for pix2pix, lsgan for CycleGAN).
    #[arg(long, value_enum)]
    gan_mode: Option<Gan>,
    #[arg(long, default_value_t = 100.0)]
    lambda_l1: f32,
    #[arg(long, default_value_t = 10.0)]
    lambda_a: f32,
    #[arg(long, default_value_t = 10.0)]
    lambda_b: f32,
    #[arg(long, default_value_t = 0.5)]
    lambda_identity: f32,
    /// Image pool size (default: 0 for pix2pix, 50 for CycleGAN).
    #[arg(long)]
    pool_size: Option<usize>,
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0.5)]
    beta1: f64,
    /// Epochs at the initial learning rate.
    #[arg(long, default_value_t = 100)]
    n_epochs: usize,
    /// Epochs of linear decay to 0 after that.
    #[arg(long, default_value_t = 100)]
    n_epochs_decay: usize,
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Init::Normal)]
    init_type: Init,
    #[arg(long, default_value_t = 0.02)]
    init_gain: f32,
    /// Slicing axis after reorientation to RAS+ (2: axial).
    #[arg(long, default_value_t = 2)]
    axis: usize,
    /// Skip training slices with fewer non-zero voxels than this.
    #[arg(long, default_value_t = 1000)]
    min_foreground: usize,
    /// Pad slices to SIZE x SIZE (default: the smallest size the generator accepts).
    #[arg(long)]
    size: Option<usize>,
    #[arg(long, num_args = 2, default_values_t = [0.5, 99.5])]
    percentiles: Vec<f64>,
    /// Random left-right flips (off by default: on MRI slices it mirrors anatomy).
    #[arg(long)]
    flip: bool,
    /// Resize slices to this size before cropping (the reference's load_size).
    #[arg(long)]
    load_size: Option<usize>,
    /// Random crops of this size (the reference's crop_size).
    #[arg(long)]
    crop_size: Option<usize>,
    /// Validate every N epochs (0: never).
    #[arg(long, default_value_t = 1)]
    val_every: usize,
    /// Keep an `epoch_<n>` checkpoint every N epochs (0: only latest and best).
    #[arg(long, default_value_t = 5)]
    save_epoch_freq: usize,
    /// cyclegan3d: patch size X,Y,Z in voxels.
    #[arg(long, default_value = "128,128,64", value_parser = super::parse_triple)]
    patch: [usize; 3],
    /// cyclegan3d: sliding-window stride in-plane (x and y) at prediction and validation.
    #[arg(long, default_value_t = 32)]
    stride_inplane: usize,
    /// cyclegan3d: sliding-window stride through-plane (z).
    #[arg(long, default_value_t = 32)]
    stride_layer: usize,
    /// cyclegan3d: blending of overlapping windows.
    #[arg(long, value_enum, default_value_t = BlendArg::Gaussian)]
    blend: BlendArg,
    /// cyclegan3d: windows per generator call at validation and prediction (predict can
    /// override it).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    window_batch: u64,
    /// cyclegan3d: patches per domain per epoch.
    #[arg(long, default_value_t = 100)]
    patches_per_epoch: usize,
    /// cyclegan3d: fraction of foreground voxels a patch should have (the reference: 0.001).
    #[arg(long, default_value_t = 0.001)]
    patch_min_foreground: f64,
    /// cyclegan3d: probability of centring a patch on a foreground voxel.
    #[arg(long, default_value_t = 0.8)]
    foreground_bias: f64,
    /// cyclegan3d: resample to this voxel size in mm (X,Y,Z, trilinear) before patching;
    /// predictions are resampled back to the input's grid.
    #[arg(long, value_parser = parse_spacing)]
    spacing: Option<[f32; 3]>,
    /// Batch-norm statistics for validation and, by default, prediction.
    #[arg(long, value_enum, default_value_t = Stats::Batch)]
    norm_stats: Stats,
}

/// Training and validation subjects from the lists and exclusions.
fn split_subjects(args: &TrainArgs) -> anyhow::Result<(Vec<SubjectFiles>, Vec<SubjectFiles>)> {
    let val_names = args
        .val_list
        .as_deref()
        .map(subject_list)
        .transpose()?
        .unwrap_or_default();
    let train = match &args.train_list {
        Some(list) => paired_subjects(&args.data, &args.a, &args.b, Some(&subject_list(list)?))?,
        None => paired_subjects(&args.data, &args.a, &args.b, None)?
            .into_iter()
            .filter(|s| !val_names.contains(&s.subject))
            .collect(),
    };
    let train: Vec<SubjectFiles> = train
        .into_iter()
        .filter(|s| !args.exclude.contains(&s.subject))
        .collect();
    if let Some(s) = train.iter().find(|s| val_names.contains(&s.subject)) {
        bail!(
            "subject {} is in both the training and the validation list",
            s.subject
        );
    }
    if train.is_empty() {
        bail!("no training subjects left in {}", args.data.display());
    }
    let val = if val_names.is_empty() {
        Vec::new()
    } else {
        paired_subjects(&args.data, &args.a, &args.b, Some(&val_names))?
    };
    Ok((train, val))
}

fn config(
    args: &TrainArgs,
    train: &[SubjectFiles],
    val: &[SubjectFiles],
) -> anyhow::Result<TrainConfig> {
    let pix = args.model == Model::Pix2pix;
    let volumetric = args.model == Model::Cyclegan3d;
    let default_g = match args.model {
        Model::Pix2pix => "unet_256",
        Model::Cyclegan => "resnet_9blocks",
        Model::Cyclegan3d => "resnet3d_9blocks",
    };
    let arch = GeneratorArch::parse(args.net_g.as_deref().unwrap_or(default_g))
        .map_err(anyhow::Error::msg)?;
    if volumetric != (arch.spatial_dims() == 3) {
        bail!(
            "{} is a {}D generator; --model {:?} needs a {}D one",
            arch.name(),
            arch.spatial_dims(),
            args.model,
            if volumetric { 3 } else { 2 }
        );
    }
    let norm = match args
        .norm
        .unwrap_or(if pix { Norm::Batch } else { Norm::Instance })
    {
        Norm::Batch => NormKind::Batch,
        Norm::Instance => NormKind::Instance,
        Norm::None => NormKind::None,
    };
    let gan_mode = match args
        .gan_mode
        .unwrap_or(if pix { Gan::Vanilla } else { Gan::Lsgan })
    {
        Gan::Vanilla => GanMode::Vanilla,
        Gan::Lsgan => GanMode::Lsgan,
    };
    let generator = GeneratorConfig {
        arch,
        input_nc: 1,
        output_nc: 1,
        ngf: args.ngf,
        norm,
        dropout: args.dropout.unwrap_or(pix),
    };
    let d_arch = match (volumetric, args.n_layers_d) {
        (true, n) => DiscriminatorArch::NLayer3d { n_layers: n.max(1) },
        (false, 0) => DiscriminatorArch::Pixel,
        (false, n) => DiscriminatorArch::NLayer { n_layers: n },
    };
    let discriminator = DiscriminatorConfig {
        arch: d_arch,
        input_nc: if pix { 2 } else { 1 },
        ndf: args.ndf,
        norm,
    };
    // Slice size: the first training volume's, padded to what the generator accepts.
    let first = read(&train[0].a, &ReadOptions::default())?;
    let plane: Vec<usize> = (0..3)
        .filter(|&a| a != args.axis)
        .map(|a| first.dims[a])
        .collect();
    let m = arch.size_multiple();
    let size = match args.size {
        Some(s) if s % m != 0 => bail!(
            "--size {s} is not a multiple of {m}, which {} needs",
            arch.name()
        ),
        Some(s) => [s, s],
        None => [plane[0].div_ceil(m) * m, plane[1].div_ceil(m) * m],
    };
    let m3 = arch.size_multiple();
    if volumetric && args.patch.iter().any(|p| p % m3 != 0) {
        bail!(
            "--patch {:?}: every side must be a multiple of {m3}",
            args.patch
        );
    }
    Ok(TrainConfig {
        model: match args.model {
            Model::Pix2pix => ModelKind::Pix2pix,
            Model::Cyclegan => ModelKind::Cyclegan,
            Model::Cyclegan3d => ModelKind::Cyclegan3d,
        },
        generator,
        discriminator,
        pix2pix: Pix2PixLoss {
            gan_mode,
            lambda_l1: args.lambda_l1,
        },
        cycle: CycleLoss {
            gan_mode,
            lambda_a: args.lambda_a,
            lambda_b: args.lambda_b,
            lambda_identity: args.lambda_identity,
        },
        pool_size: args.pool_size.unwrap_or(if pix { 0 } else { 50 }),
        adam: AdamConfig {
            lr: args.lr,
            beta1: args.beta1,
            ..AdamConfig::default()
        },
        n_epochs: args.n_epochs,
        n_epochs_decay: args.n_epochs_decay,
        batch_size: args.batch_size,
        seed: args.seed,
        init: match args.init_type {
            Init::Normal => InitKind::Normal,
            Init::Xavier => InitKind::Xavier,
            Init::Kaiming => InitKind::Kaiming,
            Init::Orthogonal => InitKind::Orthogonal,
        },
        init_gain: args.init_gain,
        data: DataConfig {
            root: args.data.clone(),
            a: args.a.clone(),
            b: args.b.clone(),
            train_subjects: train.iter().map(|s| s.subject.clone()).collect(),
            val_subjects: val.iter().map(|s| s.subject.clone()).collect(),
            axis: args.axis,
            min_foreground: args.min_foreground,
            size,
            percentiles: [args.percentiles[0], args.percentiles[1]],
            flip: args.flip,
            load_size: args.load_size,
            crop_size: args.crop_size,
        },
        norm_stats: if args.norm_stats == Stats::Batch {
            NormStats::Batch
        } else {
            NormStats::Running
        },
        val_every: args.val_every,
        save_epoch_freq: args.save_epoch_freq,
        norm_a: None,
        norm_b: None,
        volumetric: volumetric.then_some(VolumetricConfig {
            patch: args.patch,
            stride: [args.stride_inplane, args.stride_inplane, args.stride_layer],
            blend: if args.blend == BlendArg::Gaussian {
                Blend::Gaussian
            } else {
                Blend::Average
            },
            patches_per_epoch: args.patches_per_epoch,
            min_foreground: args.patch_min_foreground,
            foreground_bias: args.foreground_bias,
            spacing: args.spacing,
            window_batch: args.window_batch as usize,
        }),
    })
}

/// Runs a training to its end with a progress bar; prints one line per epoch.
pub fn train_with_progress(
    run: &mut Run,
    data: &TrainingData,
    val: &[SubjectFiles],
) -> anyhow::Result<()> {
    let total = run.config.total_epochs();
    let device = run.device.clone();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "epoch {prefix} {bar:25} {pos}/{len} it, {per_sec}, ETA {eta} {msg}",
        )
        .expect("template"),
    );
    fit(
        run,
        data,
        val,
        |epoch, done, n, losses| {
            if done == 1 {
                bar.set_length(n as u64);
                bar.set_position(0);
                bar.set_prefix(format!("{epoch}/{total}"));
            }
            bar.set_position(done as u64);
            let msg: Vec<String> = losses.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
            bar.set_message(msg.join(" "));
        },
        |r| {
            let losses: Vec<String> = r
                .losses
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            let val = r.val.map_or(String::new(), |v| {
                format!(
                    " | val PSNR {:.2} dB SSIM {:.4} MAE {:.4}",
                    v.psnr, v.ssim, v.mae
                )
            });
            let memory =
                super::memory_peak_note(&device).map_or(String::new(), |m| format!(" | {m}"));
            let line = format!(
                "epoch {}/{total} lr {:.2e} {:.1}s: {}{val}{memory}",
                r.epoch,
                r.lr,
                r.seconds,
                losses.join(", ")
            );
            // A hidden bar (no terminal) swallows println: print plainly then.
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
        },
    )?;
    bar.finish_and_clear();
    Ok(())
}

/// Parses `mrgan train` arguments from a list (the demo builds its run this way).
pub fn args_from(list: &[String]) -> anyhow::Result<TrainArgs> {
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: TrainArgs,
    }
    let argv = std::iter::once("train".to_string()).chain(list.iter().cloned());
    Ok(<Wrapper as clap::Parser>::try_parse_from(argv)?.args)
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    if !args.resume && args.run.join("config.json").exists() {
        bail!(
            "{} already holds a run: use --continue to resume it, or another --run folder",
            args.run.display()
        );
    }
    let (train, val) = split_subjects(&args)?;
    let device = args.device.open()?;
    let (mut run, data) = if args.resume {
        let run = Run::open(&args.run, "latest")
            .with_context(|| format!("resuming {}", args.run.display()))?;
        println!(
            "resuming {} after epoch {} (iteration {})",
            args.run.display(),
            run.state.epoch,
            run.state.iteration
        );
        let data = load_training_data(&mut run.config.clone(), &train)?;
        (run, data)
    } else {
        let mut cfg = config(&args, &train, &val)?;
        let data = load_training_data(&mut cfg, &train)?;
        (Run::create(&args.run, cfg)?, data)
    };
    run.to_device(device.clone())?;
    println!(
        "{:?}: {} training slices from {} subjects, {} validation subjects, {} -> {}, {} epochs",
        run.config.model,
        data.len(),
        train.len(),
        val.len(),
        run.config.data.a,
        run.config.data.b,
        run.config.total_epochs()
    );
    train_with_progress(&mut run, &data, &val)?;
    let tuned = device.autotune_summary();
    if !tuned.is_empty() {
        println!("autotuned conv shapes: {}", tuned.join("; "));
    }
    println!(
        "done: {} (report: {})",
        args.run.display(),
        args.run.join("report.html").display()
    );
    Ok(())
}
