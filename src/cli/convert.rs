//! `mrgan convert IN OUT`: a generator checkpoint between the PyTorch reference's `.pth`
//! and mrgan's network safetensors, either way. The architecture is detected from the keys
//! and checked by building the network and loading every tensor into it.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use mrgan::checkpoint::detect::{detect_generator, load_state_dict};
use mrgan::checkpoint::native::save_network;
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
            // The reference's state_dict: parameters, then each batch norm's buffers.
            let stats: Vec<(String, Vec<f32>, Vec<f32>)> = net
                .norms_mut()
                .iter()
                .filter_map(|n| {
                    n.stats
                        .as_ref()
                        .map(|s| (n.name.clone(), s.mean.clone(), s.var.clone()))
                })
                .collect();
            let arena = net.arena();
            let zero = [0.0f32];
            let mut tensors: Vec<(String, Vec<usize>, &[f32])> = arena
                .entries()
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        e.shape.dims().to_vec(),
                        &arena.values()[e.range()],
                    )
                })
                .collect();
            for (name, mean, var) in &stats {
                tensors.push((format!("{name}.running_mean"), vec![mean.len()], mean));
                tensors.push((format!("{name}.running_var"), vec![var.len()], var));
                tensors.push((format!("{name}.num_batches_tracked"), vec![], &zero));
            }
            torch_pth::write(&args.output, &tensors)?;
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
