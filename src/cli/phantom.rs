//! `mrgan phantom`: writes synthetic subjects (T1, T2, FLAIR, PD and tissue labels).

use std::path::PathBuf;

use clap::Args;

use mrgan::data::phantom::{PhantomSpec, generate, write};

#[derive(Args)]
pub struct PhantomArgs {
    /// Folder to write `phantom-000/`, `phantom-001/`, ... into.
    #[arg(long)]
    out: PathBuf,
    /// Number of subjects.
    #[arg(long, default_value_t = 1)]
    subjects: usize,
    /// Volume size in voxels, `X,Y,Z`.
    #[arg(long, default_value = "96,96,64", value_parser = parse_dims)]
    size: [usize; 3],
    /// Voxel size in mm.
    #[arg(long, default_value_t = 2.0)]
    spacing: f32,
    /// Seed of the first subject (subject i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noise standard deviation as a fraction of the brightest signal.
    #[arg(long, default_value_t = 0.02)]
    noise: f64,
    /// Keep scalp and skull (default: skull-stripped, like the real data).
    #[arg(long)]
    keep_skull: bool,
}

fn parse_dims(s: &str) -> Result<[usize; 3], String> {
    super::parse_xyz(
        s,
        |[x, y, z]| x >= 8 && y >= 8 && z >= 8 && x * y * z <= 1 << 27,
        "each at least 8, at most 2^27 voxels",
    )
}

pub fn run(args: PhantomArgs) -> anyhow::Result<()> {
    for i in 0..args.subjects {
        let spec = PhantomSpec {
            dims: args.size,
            spacing: [args.spacing; 3],
            seed: args.seed + i as u64,
            noise: args.noise,
            skull_strip: !args.keep_skull,
            ..PhantomSpec::default()
        };
        let dir = args.out.join(format!("phantom-{i:03}"));
        write(&generate(&spec), &dir)?;
        println!("wrote {}", dir.display());
    }
    Ok(())
}
