//! `mrgan slice`: exports normalised slices as PNG in the PyTorch reference's dataset
//! layouts, so data can move between mrgan and the reference code.
//!
//! - `ab`:        `OUT/A/<phase>/<name>.png` and `OUT/B/<phase>/<name>.png` (matching names)
//! - `aligned`:   `OUT/<phase>/<name>.png`, A and B side by side (pix2pix `--dataset_mode aligned`)
//! - `unaligned`: `OUT/<phase>A/<name>.png`, `OUT/<phase>B/<name>.png` (CycleGAN)
//!
//! Names are `<subject>_<axis><slice>.png`, e.g. `BraTS-GLI-00001-000_z077.png`. Intensities
//! are the percentile normalisation's [-1, 1] mapped to the full PNG range, which is what the
//! reference's `tensor2im` undoes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

use mrgan::data::dataset::{PairedSlices, SliceOptions, paired_subjects, subject_list};
use mrgan::data::normalize::NormMethod;
use mrgan::data::png::{BitDepth, side_by_side, write};
use mrgan::data::slices::PadTarget;

#[derive(Args)]
pub struct SliceArgs {
    /// Folder of subject folders.
    #[arg(long)]
    data: PathBuf,
    /// Modality of domain A (e.g. t1; BIDS suffixes like T1w work too).
    #[arg(long)]
    a: String,
    /// Modality of domain B.
    #[arg(long)]
    b: String,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Layout::Ab)]
    layout: Layout,
    /// Phase folder name (train, val, test).
    #[arg(long, default_value = "train")]
    phase: String,
    /// Only the subjects listed in this file (one per line).
    #[arg(long)]
    subjects: Option<PathBuf>,
    /// Slicing axis after reorientation to RAS+ (2: axial).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..3))]
    axis: u8,
    /// Skip slices with fewer non-zero voxels in A than this.
    #[arg(long, default_value_t = 1000)]
    min_foreground: usize,
    /// Pad slices to SIZE x SIZE (0: no padding).
    #[arg(long, default_value_t = 256)]
    pad: usize,
    /// Lower and upper foreground percentiles of the normalisation.
    #[arg(long, num_args = 2, default_values_t = [0.5, 99.5])]
    percentiles: Vec<f64>,
    /// 16-bit PNG instead of 8-bit.
    #[arg(long)]
    sixteen_bit: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Layout {
    Ab,
    Aligned,
    Unaligned,
}

fn create(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

pub fn run(args: SliceArgs) -> anyhow::Result<()> {
    let list = args.subjects.as_deref().map(subject_list).transpose()?;
    let subjects = paired_subjects(&args.data, &args.a, &args.b, list.as_deref())?;
    let opts = SliceOptions {
        norm: NormMethod::Percentile {
            low: args.percentiles[0],
            high: args.percentiles[1],
        },
        axis: args.axis as usize,
        min_foreground: args.min_foreground,
        pad: (args.pad > 0).then_some(PadTarget::Exact(args.pad, args.pad)),
        ..SliceOptions::default()
    };
    let depth = if args.sixteen_bit {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    };
    let (dir_a, dir_b) = match args.layout {
        Layout::Ab => (
            args.out.join("A").join(&args.phase),
            args.out.join("B").join(&args.phase),
        ),
        Layout::Aligned => (args.out.join(&args.phase), args.out.join(&args.phase)),
        Layout::Unaligned => (
            args.out.join(format!("{}A", args.phase)),
            args.out.join(format!("{}B", args.phase)),
        ),
    };
    create(&dir_a)?;
    create(&dir_b)?;
    let bar = super::counting_bar(subjects.len(), "subjects");
    let axis_letter = ['x', 'y', 'z'][args.axis as usize];
    let mut written = 0;
    for s in &subjects {
        let pairs = PairedSlices::load(std::slice::from_ref(s), &opts)?;
        for i in 0..pairs.len() {
            let name = format!("{}_{axis_letter}{:03}.png", s.subject, pairs.a.origin[i].1);
            let (a, b) = (&pairs.a.images[i], &pairs.b.images[i]);
            if args.layout == Layout::Aligned {
                write(&dir_a.join(&name), &side_by_side(&[a, b]), -1.0, 1.0, depth)?;
            } else {
                write(&dir_a.join(&name), a, -1.0, 1.0, depth)?;
                write(&dir_b.join(&name), b, -1.0, 1.0, depth)?;
            }
            written += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "wrote {written} slice pairs of {} subjects under {}",
        subjects.len(),
        args.out.display()
    );
    Ok(())
}
