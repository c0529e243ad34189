//! `mrgan bench ...`: kernel benchmarks with a readable table and optional CSV.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use mrgan::infer::sliding::{Blend, SlidingWindow};

use mrgan::bench::{cpu_conv, layers};
use mrgan::report::write_atomic;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// CPU conv fprop/dgrad/wgrad on the reference networks' layers at 256x256, batch 1,
    /// next to the raw GEMM of the same shapes measured in the same run.
    CpuConv {
        /// Which network's layers.
        #[arg(long, value_enum, default_value_t = Net::All)]
        net: Net,
        /// Timed runs per measurement (the median is reported, after one warm-up run).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Also write the rows as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// One training iteration and one generator inference (pix2pix: unet_256 + basic D;
    /// CycleGAN: two resnet_9blocks + two basic Ds; 64 filters) on the CPU or a GPU, next to
    /// PyTorch's on the same device in the same run when available.
    Train {
        #[arg(long, value_enum, default_value_t = Model::Pix2pix)]
        model: Model,
        /// Image side (CycleGAN on BraTS's slices trains at 240).
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        iters: usize,
        #[command(flatten)]
        device: super::DeviceArg,
        /// Python with torch for the side-by-side (default: $MRGAN_PYTHON or python3).
        #[arg(long)]
        python: Option<String>,
    },
    /// GPU kernels (feature `cuda`): every conv layer of the reference networks per primitive
    /// and batch size (tiled ones as planned and in every tile shape), the norms and fused
    /// Adam, against peaks measured in the same run (a copy and a dense GEMM).
    Kernels {
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
        /// Batch sizes, comma-separated.
        #[arg(long, default_value = "1,16", value_delimiter = ',')]
        batch: Vec<usize>,
        /// Timed runs per measurement (the median is reported, after one warm-up run).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Also write the rows as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Only the conv layers, norms and Adam whose name contains this text, e.g.
        /// "resnet_9blocks block" or "norm" (the peaks are measured anyway).
        #[arg(long)]
        only: Option<String>,
    },
    /// Volumetric CycleGAN prediction of a 240x240x155 volume: one sliding window of the
    /// default 3D generator timed, times the windows needed (strides 32/32); with
    /// --whole-volume, also a whole volume timed end to end; with --train, also one CycleGAN
    /// training step at --batch patches, with the device memory it peaks at.
    Volumetric {
        #[arg(long, default_value_t = 64)]
        ngf: usize,
        /// Patch X,Y,Z.
        #[arg(long, default_value = "128,128,64", value_parser = super::parse_triple)]
        patch: [usize; 3],
        #[arg(long)]
        train: bool,
        #[arg(long, default_value_t = 2)]
        batch: usize,
        /// Also predict a whole volume (a synthetic ramp) through the sliding windows, Gaussian
        /// blend, as `mrgan predict` does: about half an hour at the defaults on two CPU cores.
        #[arg(long)]
        whole_volume: bool,
        /// Windows per generator call with --whole-volume.
        #[arg(long, default_value_t = 2)]
        window_batch: usize,
        #[command(flatten)]
        device: super::DeviceArg,
        /// With --train, Python with torch for PyTorch's step on the same device (default:
        /// $MRGAN_PYTHON or python3).
        #[arg(long)]
        python: Option<String>,
    },
    /// Read + normalise + slice one volume on one core (default: a 240x240x155 int16
    /// phantom written to a temporary file).
    Data {
        /// A NIfTI volume to time instead of the phantom.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Timed runs per measurement (the median is reported, after one warm-up run).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Model {
    Pix2pix,
    Cyclegan,
}

#[derive(Clone, Copy, ValueEnum)]
enum Net {
    Unet256,
    Resnet9blocks,
    Patchgan,
    All,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Which::Data { file, reps } => bench_data(file, reps),
        Which::Kernels {
            gpu,
            batch,
            reps,
            csv,
            only,
        } => bench_kernels(gpu, &batch, reps, csv, only.as_deref()),
        Which::Volumetric {
            ngf,
            patch,
            train,
            batch,
            whole_volume,
            window_batch,
            device,
            python,
        } => {
            let window = SlidingWindow {
                patch,
                stride: [32; 3],
                blend: Blend::Gaussian,
                batch: window_batch,
            };
            bench_volumetric(
                ngf,
                &window,
                whole_volume,
                train.then_some(batch),
                &device.open()?,
                &python_or_default(python),
            )
        }
        Which::Train {
            model,
            size,
            batch,
            iters,
            device,
            python,
        } => {
            use mrgan::bench::train_step::BenchModel;
            let bench = mrgan::bench::train_step::TrainBench {
                model: match model {
                    Model::Pix2pix => BenchModel::Pix2pix,
                    Model::Cyclegan => BenchModel::Cyclegan,
                },
                size,
                batch,
                iters,
                device: device.open()?,
            };
            bench_train(&bench, python)
        }
        Which::CpuConv { net, reps, csv } => {
            let chosen = match net {
                Net::Unet256 => layers::unet_256(),
                Net::Resnet9blocks => layers::resnet_9blocks(),
                Net::Patchgan => layers::patchgan(),
                Net::All => [
                    layers::unet_256(),
                    layers::resnet_9blocks(),
                    layers::patchgan(),
                ]
                .concat(),
            };
            println!(
                "CPU conv primitives vs raw GEMM (gemm crate), batch 1, {} rayon threads",
                rayon::current_num_threads()
            );
            let bar = super::counting_bar(chosen.len(), "layers");
            let rows = cpu_conv::run(&chosen, reps, |done, _| bar.set_position(done as u64));
            bar.finish_and_clear();
            cpu_conv::write_table(&rows, &mut std::io::stdout())?;
            if let Some(path) = csv {
                write_atomic(&path, |w| cpu_conv::write_csv(&rows, w))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

fn bench_volumetric(
    ngf: usize,
    window: &SlidingWindow,
    whole_volume: bool,
    train_batch: Option<usize>,
    device: &mrgan::device::Device,
    python: &str,
) -> anyhow::Result<()> {
    use mrgan::bench::volumetric::{train_step_cost, volume_cost, window_cost};
    let (volume, patch) = ([240, 240, 155], window.patch);
    let on = match device {
        mrgan::device::Device::Cpu => format!("CPU, {} threads", rayon::current_num_threads()),
        #[allow(unreachable_patterns)] // only the CPU without the cuda feature
        other => other.describe(),
    };
    println!("resnet3d_9blocks ngf {ngf}, patch {patch:?}, {on}");
    let peak = |what: &str| {
        if let Some(note) = super::memory_peak_note(device) {
            println!("{what}: {note}");
        }
    };
    let (s, n) = window_cost(ngf, window, volume, device)?;
    println!(
        "predict: one window {s:.3} s; a {volume:?} volume needs {n} windows: about {:.1} s ({:.2} min) per volume",
        s * n as f64,
        s * n as f64 / 60.0
    );
    peak("predict (one window)");
    if whole_volume {
        device.reset_memory_peak();
        let bar = super::counting_bar(n, "windows");
        let s = volume_cost(ngf, window, volume, device, &mut |done, _| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        println!(
            "predict: a whole {volume:?} volume, {n} windows, {} per call: {s:.1} s ({:.2} min), {:.3} s per window",
            window.batch,
            s / 60.0,
            s / n as f64
        );
        peak("predict (whole volume)");
    }
    if let Some(batch) = train_batch {
        device.reset_memory_peak();
        let s = train_step_cost(ngf, patch, batch, device)?;
        println!("train: one CycleGAN step (G_A, G_B, 3D PatchGANs), batch {batch}: {s:.3} s");
        peak("train step");
        device.release_cached_memory();
        match mrgan::bench::volumetric::torch_train_step(python, ngf, patch, batch, device) {
            Ok((t, line)) => println!(
                "train: PyTorch's step {t:.3} s, mrgan / PyTorch {:.2} ({line})",
                s / t
            ),
            Err(why) => println!("train: PyTorch side skipped: {why}"),
        }
    }
    Ok(())
}

fn bench_data(file: Option<PathBuf>, reps: usize) -> anyhow::Result<()> {
    // One core, as the target is stated.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .ok();
    let (_keep, path) = match file {
        Some(f) => (None, f),
        None => {
            let (dir, path) = mrgan::bench::data_pipeline::brats_sized_phantom()?;
            (Some(dir), path)
        }
    };
    let t = mrgan::bench::data_pipeline::run(&path, reps)?;
    println!("{} (median of {reps}, 1 thread)", path.display());
    println!(
        "read {:.3} s, normalize {:.3} s, slice+pad {:.3} s, total {:.3} s",
        t.read,
        t.normalize,
        t.slice,
        t.total()
    );
    Ok(())
}

fn bench_train(
    bench: &mrgan::bench::train_step::TrainBench,
    python: Option<String>,
) -> anyhow::Result<()> {
    let python = python_or_default(python);
    print!("{}", mrgan::bench::train_step::report(bench, &python)?);
    Ok(())
}

/// `--python`, else $MRGAN_PYTHON, else python3.
fn python_or_default(python: Option<String>) -> String {
    python
        .or_else(|| std::env::var("MRGAN_PYTHON").ok())
        .unwrap_or_else(|| "python3".into())
}

#[cfg(feature = "cuda")]
fn bench_kernels(
    gpu: usize,
    batches: &[usize],
    reps: usize,
    csv: Option<PathBuf>,
    only: Option<&str>,
) -> anyhow::Result<()> {
    use mrgan::bench::kernel_table::{write_csv, write_table};
    use mrgan::bench::kernels::run;
    let backend = mrgan::device::cuda::CudaBackend::shared(gpu).map_err(anyhow::Error::msg)?;
    let (rows, peaks) = run(&backend, batches, reps, only, |r| {
        eprintln!("{} batch {}: {:.3} ms", r.kernel, r.batch, r.ms)
    })
    .map_err(anyhow::Error::msg)?;
    write_table(&mut std::io::stdout(), &backend.name(), &rows, peaks)?;
    let pool = backend.pool_stats();
    println!(
        "scratch pool (split-K partial sums, thin convs' tap planes, weight panels): peak {:.1} MiB, {} allocations served from the cache, {} from the device",
        pool.peak as f64 * 4.0 / (1 << 20) as f64,
        pool.hits,
        pool.misses
    );
    if let Some(path) = csv {
        write_atomic(&path, |w| write_csv(w, &rows))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn bench_kernels(
    _gpu: usize,
    _batches: &[usize],
    _reps: usize,
    _csv: Option<PathBuf>,
    _only: Option<&str>,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "this mrgan was built without the `cuda` feature: build with `cargo build --release --features cuda`"
    )
}
