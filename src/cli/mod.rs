//! The command line: one file per subcommand.

mod bench;
mod convert;
mod demo;
mod eval;
mod info;
mod phantom;
mod predict;
mod slice;
mod train;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mrgan::device::{Device, DeviceChoice};

/// MRI contrast translation (T1 <-> T2) with GANs on a hand-written engine.
#[derive(Parser)]
#[command(name = "mrgan", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole workflow on built-in phantom data: train pix2pix T1 -> T2, predict, score.
    Demo(demo::DemoArgs),
    /// Measures the engine's kernels.
    Bench(bench::BenchArgs),
    /// Trains pix2pix or CycleGAN from NIfTI folders.
    Train(Box<train::TrainArgs>),
    /// Translates volumes with a trained run.
    Predict(predict::PredictArgs),
    /// Converts a generator checkpoint between .pth and mrgan's safetensors.
    Convert(convert::ConvertArgs),
    /// Shows what a checkpoint or a volume holds.
    Info(info::InfoArgs),
    /// Writes synthetic head phantoms (T1, T2, FLAIR, PD, labels) as NIfTI.
    Phantom(phantom::PhantomArgs),
    /// Exports slices as PNG in the PyTorch reference's dataset layouts.
    Slice(slice::SliceArgs),
    /// Scores predicted volumes against real ones (PSNR, SSIM, MAE, NMSE).
    Eval(eval::EvalArgs),
}

/// Parses the arguments and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Phantom(args) => phantom::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Info(args) => info::run(args),
        Command::Train(args) => train::run(*args),
        Command::Predict(args) => predict::run(args),
        Command::Slice(args) => slice::run(args),
    }
}

/// `--device`, shared by the subcommands that run networks.
#[derive(Args, Debug, Clone)]
pub struct DeviceArg {
    /// Where networks run: auto (GPU 0 when one works, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// On a GPU, time every candidate launch of each conv shape (tile shapes, K splits, and
    /// Winograd's transform on 3x3 convs at stride 1) the first time it runs and keep the
    /// fastest (as PyTorch's cudnn.benchmark): a slower first step, faster ones after;
    /// results may differ in the last bits from an untuned run.
    #[arg(long)]
    pub autotune: bool,
}

impl DeviceArg {
    /// Opens the device and says once per process which it is, and under auto why it is
    /// the CPU.
    pub fn open(&self) -> anyhow::Result<Device> {
        static TOLD: std::sync::Once = std::sync::Once::new();
        let opened = self.device.open()?;
        TOLD.call_once(|| {
            if let Some(why) = &opened.fallback {
                eprintln!("device: {why}");
            }
            eprintln!("device: {}", opened.device.describe());
            if self.autotune && opened.device.is_cpu() {
                eprintln!("device: --autotune has nothing to tune on the CPU");
            }
        });
        opened.device.set_autotune(self.autotune);
        Ok(opened.device)
    }
}

/// A progress bar counting `len` `unit`s (volumes, subjects, windows...) with rate and ETA.
pub fn counting_bar(len: usize, unit: &str) -> ProgressBar {
    ProgressBar::new(len as u64).with_style(counting_style(unit))
}

/// The style of `counting_bar`, for bars made otherwise (hidden until needed).
pub fn counting_style(unit: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{bar:30}} {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}}"
    ))
    .expect("a valid template")
}

/// "device memory peak 1.23 GiB held, 812.0 MiB in use" on a GPU, None on the CPU.
pub fn memory_peak_note(device: &Device) -> Option<String> {
    let size = |bytes: usize| {
        let mib = bytes as f64 / (1u64 << 20) as f64;
        if mib < 1024.0 {
            format!("{mib:.1} MiB")
        } else {
            format!("{:.2} GiB", mib / 1024.0)
        }
    };
    device.memory_peak().map(|p| {
        format!(
            "device memory peak {} held, {} in use",
            size(p.held_bytes),
            size(p.in_use_bytes)
        )
    })
}

/// "X,Y,Z": three comma-separated numbers that together pass `ok`; `rule` ends the error
/// message ("expected X,Y,Z <rule>").
pub fn parse_xyz<T>(s: &str, ok: impl Fn([T; 3]) -> bool, rule: &str) -> Result<[T; 3], String>
where
    T: std::str::FromStr + Copy,
    T::Err: std::fmt::Display,
{
    let v: Vec<T> = s
        .split(',')
        .map(|p| p.trim().parse::<T>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    match v[..] {
        [x, y, z] if ok([x, y, z]) => Ok([x, y, z]),
        _ => Err(format!("{s:?}: expected X,Y,Z {rule}")),
    }
}

/// "X,Y,Z" of positive integers (a patch size).
pub fn parse_triple(s: &str) -> Result<[usize; 3], String> {
    parse_xyz(s, |v| v.iter().all(|&x| x > 0), "of positive integers")
}
