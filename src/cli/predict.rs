//! `mrgan predict`: a generator on every volume of a file or folder, written as NIfTI with
//! the input's header. The generator comes from an mrgan run (`--run`) or from the PyTorch
//! reference's checkpoints (`--checkpoint latest_net_G.pth`, or a CycleGAN folder holding
//! `latest_net_G_A.pth` / `latest_net_G_B.pth`), whose architecture is detected.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar};

use mrgan::checkpoint::detect::{detect_generator, load_state_dict};
use mrgan::checkpoint::torch_pth;
use mrgan::data::discover::volumes;
use mrgan::data::nifti::{OrientationMode, OutDtype, ReadOptions, read, write};
use mrgan::data::normalize::{NormMethod, Normalizer};
use mrgan::data::slices::PadTarget;
use mrgan::data::volume::Volume;
use mrgan::infer::slicewise::{SliceInference, translate};
use mrgan::nn::layers::{Mode, NormKind};
use mrgan::nn::nets::{GeneratorArch, GeneratorConfig, Network, build_generator};
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

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum Intensity {
    /// Percentile normalisation in, target units out (runs) or [-1, 1] / --target-range (.pth).
    Percentile,
    /// Voxel values in unchanged and raw network output out, voxel array as stored, slices
    /// along the last axis: for exact comparisons with the PyTorch reference.
    None,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum NormArg {
    Batch,
    Instance,
    None,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run folder written by `mrgan train`.
    #[arg(
        long,
        required_unless_present = "checkpoint",
        conflicts_with = "checkpoint"
    )]
    run: Option<PathBuf>,
    /// A reference checkpoint: a pix2pix `.pth`, or a folder with CycleGAN's
    /// `<epoch>_net_G_A.pth` and `<epoch>_net_G_B.pth`.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    device: super::DeviceArg,
    /// Which checkpoint of the run (latest, best, epoch_<n>) or epoch prefix of the .pth files.
    #[arg(long, default_value = "latest")]
    epoch: String,
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
    /// Batch-norm statistics: batch (the reference's default test behaviour) or running
    /// (its --eval). Default: the run's choice, batch for .pth files.
    #[arg(long, value_enum)]
    norm_stats: Option<Stats>,
    #[arg(long, value_enum, default_value_t = Intensity::Percentile)]
    intensity: Intensity,
    /// For .pth generators with percentile intensities: map the output's [-1, 1] to this
    /// range of target units (default: leave it in [-1, 1]).
    #[arg(long, num_args = 2)]
    target_range: Option<Vec<f32>>,
    /// Override the detected generator (unet_256, resnet_9blocks, ...).
    #[arg(long)]
    net_g: Option<String>,
    /// Override the detected norm.
    #[arg(long, value_enum)]
    norm: Option<NormArg>,
    /// Volumetric runs: windows per generator call (default: the run's, 2 unless trained
    /// with --window-batch). More use more device memory and can keep a GPU busier.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    window_batch: Option<u64>,
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

/// Where the generator comes from.
enum Generator {
    Run(Box<Run>),
    Pth {
        net: Box<dyn Network>,
        config: GeneratorConfig,
    },
}

/// The reference generator file for `args`.
fn pth_file(args: &PredictArgs, checkpoint: &Path) -> PathBuf {
    if checkpoint.is_dir() {
        let suffix = if args.direction == Dir::AtoB {
            "G_A"
        } else {
            "G_B"
        };
        checkpoint.join(format!("{}_net_{suffix}.pth", args.epoch))
    } else {
        checkpoint.to_path_buf()
    }
}

/// Loads a reference generator, detecting its architecture (flags override).
pub fn load_pth(
    path: &Path,
    net_g: Option<&str>,
    norm: Option<NormKind>,
) -> anyhow::Result<(Box<dyn Network>, GeneratorConfig)> {
    let sd = torch_pth::read(path)?;
    let mut config =
        detect_generator(&sd).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(name) = net_g {
        config.arch = GeneratorArch::parse(name).map_err(anyhow::Error::msg)?;
        config.dropout = sd
            .tensors
            .iter()
            .any(|(k, _)| k.contains(".conv_block.6.weight"));
    }
    if let Some(n) = norm {
        config.norm = n;
    }
    let mut net = build_generator(&config);
    load_state_dict(net.as_mut(), &sd).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (architecture {} ngf {} norm {:?}; --net-g / --norm override the detection)",
            path.display(),
            config.arch.name(),
            config.ngf,
            config.norm
        )
    })?;
    Ok((net, config))
}

fn translate_pth(
    net: &mut dyn Network,
    config: &GeneratorConfig,
    vol: &Volume,
    args: &PredictArgs,
    mode: Mode,
) -> anyhow::Result<Volume> {
    let m = config.arch.size_multiple();
    let opts = SliceInference {
        axis: 2,
        pad: PadTarget::MultipleOf(m),
        batch_size: SliceInference::batch_for(&mode),
        mode,
    };
    if args.intensity == Intensity::None {
        return Ok(vol.with_data(translate(net, &vol.data, vol.dims, 0.0, &opts)?));
    }
    let norm = Normalizer::fit(vol, NormMethod::default())?;
    let out = translate(
        net,
        &norm.apply(&vol.data),
        vol.dims,
        norm.background(),
        &opts,
    )?;
    let fg = vol.foreground();
    let mapped = match args.target_range.as_deref() {
        Some([lo, hi]) => Normalizer::Percentile { lo: *lo, hi: *hi }.invert(&out, Some(&fg)),
        _ => out
            .iter()
            .zip(&fg)
            .map(|(&y, &f)| if f { y } else { norm.background() })
            .collect(),
    };
    Ok(vol.with_data(mapped))
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let direction = if args.direction == Dir::AtoB {
        Direction::AtoB
    } else {
        Direction::BtoA
    };
    let norm_override = args.norm.map(|n| match n {
        NormArg::Batch => NormKind::Batch,
        NormArg::Instance => NormKind::Instance,
        NormArg::None => NormKind::None,
    });
    let device = args.device.open()?;
    let mut generator = match (&args.run, &args.checkpoint) {
        (Some(dir), _) => {
            let mut run = Run::open(dir, &args.epoch)
                .with_context(|| format!("loading {}", dir.display()))?;
            run.to_device(device.clone())?;
            if let (Some(n), Some(v)) = (args.window_batch, run.config.volumetric.as_mut()) {
                v.window_batch = n as usize;
            }
            Generator::Run(Box::new(run))
        }
        (None, Some(c)) => {
            let (mut net, config) =
                load_pth(&pth_file(&args, c), args.net_g.as_deref(), norm_override)?;
            net.to_device(&device)?;
            Generator::Pth { net, config }
        }
        (None, None) => bail!("give --run or --checkpoint"),
    };
    let stats = match (args.norm_stats, &generator) {
        (Some(Stats::Batch), _) => NormStats::Batch,
        (Some(Stats::Running), _) => NormStats::Running,
        (None, Generator::Run(r)) => r.config.norm_stats,
        (None, Generator::Pth { .. }) => NormStats::Batch,
    };
    let read_opts = ReadOptions {
        orientation: if args.intensity == Intensity::None {
            OrientationMode::AsStored
        } else {
            OrientationMode::Canonical
        },
        ..ReadOptions::default()
    };
    let inputs = volumes(&args.input, args.input_name.as_deref())?;
    // Volumes, and under them a volumetric run's sliding windows (a default-sized volume
    // takes minutes on a CPU), shown once the first window is done.
    let bars = MultiProgress::new();
    let bar = bars.add(super::counting_bar(inputs.len(), "volumes"));
    let window_bar = ProgressBar::hidden().with_style(super::counting_style("windows"));
    let mut shown = false;
    let mut windows = |done: usize, all: usize| {
        if !shown {
            bars.add(window_bar.clone());
            shown = true;
        }
        window_bar.set_length(all as u64);
        window_bar.set_position(done as u64);
    };
    for entry in &inputs {
        let vol = read(&entry.path, &read_opts)?;
        let what = || format!("translating {}", entry.path.display());
        let out = match &mut generator {
            Generator::Run(run) => {
                if args.intensity == Intensity::None {
                    let mode = run.config.inference_mode(stats);
                    let config = run.config.generator;
                    let g = run.nets.generator(direction)?;
                    translate_pth(g.net.as_mut(), &config, &vol, &args, mode).with_context(what)?
                } else {
                    predict_volume(run, &vol, direction, stats, &mut windows).with_context(what)?
                }
            }
            Generator::Pth { net, config } => translate_pth(
                net.as_mut(),
                config,
                &vol,
                &args,
                Mode::inference(stats == NormStats::Batch),
            )
            .with_context(what)?,
        };
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
        let memory = super::memory_peak_note(&device).map_or(String::new(), |m| format!(" ({m})"));
        let line = format!("{} -> {}{memory}", entry.path.display(), target.display());
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
        bar.inc(1);
        window_bar.reset();
    }
    window_bar.finish_and_clear();
    bar.finish_and_clear();
    Ok(())
}
