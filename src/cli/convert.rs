//! `mrgan convert IN OUT`: a generator checkpoint between the PyTorch reference's `.pth`
//! and mrgan's network safetensors, either way. The architecture is detected from the keys
//! and checked by building the network and loading every tensor into it.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use mrgan::checkpoint::detect::{detect_generator, load_state_dict};
use mrgan::checkpoint::native::{as_views, save_network, state_tensors};
use mrgan::checkpoint::torch_pth;
use mrgan::nn::nets::build_generator;

#[derive(Args)]
pub struct ConvertArgs {
    /// `.pth` or `.safetensors` generator checkpoint.
    input: PathBuf,
    /// `.safetensors` or `.pth` to write.
    output: PathBuf,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let sd = super::info::load_state_dict_file(&args.input)?;
    let config =
        detect_generator(&sd).map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    let mut net = build_generator(&config);
    load_state_dict(net.as_mut(), &sd)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
    match args.output.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            save_network(&args.output, net.as_mut())?;
        }
        Some("pth") | Some("pt") => {
            let tensors = state_tensors(net.as_mut(), true)?;
            torch_pth::write(&args.output, &as_views(&tensors))?;
        }
        _ => bail!("{}: write .safetensors or .pth", args.output.display()),
    }
    println!(
        "{} -> {} ({} ngf {} norm {:?})",
        args.input.display(),
        args.output.display(),
        config.arch.name(),
        config.ngf,
        config.norm
    );
    Ok(())
}
