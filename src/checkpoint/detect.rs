//! Architecture detection from a reference checkpoint's keys and shapes, and loading a
//! state_dict into a network with errors that name the first key that does not fit.

use std::collections::HashSet;

use super::torch_pth::{StateDict, strip_prefixes};
use crate::nn::layers::NormKind;
use crate::nn::nets::{GeneratorArch, GeneratorConfig, Network};

/// Detects a generator's configuration (U-Net or ResNet, ngf, norm, dropout layout,
/// channels). Dropout in a U-Net leaves no trace in the keys and is reported as off.
pub fn detect_generator(sd: &StateDict) -> Result<GeneratorConfig, String> {
    let keys: HashSet<&str> = sd.tensors.iter().map(|(k, _)| strip_prefixes(k)).collect();
    let shape = |k: &str| {
        sd.tensors
            .iter()
            .find(|(n, _)| strip_prefixes(n) == k)
            .map(|(_, t)| t.shape.clone())
    };
    if let Some(first) = shape("model.model.0.weight") {
        let [ngf, input_nc, ..] = first[..] else {
            return Err("model.model.0.weight is not a conv weight".into());
        };
        let last = shape("model.model.3.weight")
            .ok_or("U-Net without its outermost up-conv model.model.3.weight")?;
        let mut inner = 0;
        let mut prefix = String::from("model.model.1.model");
        while keys.contains(format!("{prefix}.1.weight").as_str()) {
            inner += 1;
            prefix.push_str(".3.model");
        }
        let norm = if keys.contains("model.model.1.model.2.weight") {
            NormKind::Batch
        } else if keys.contains("model.model.0.bias") {
            NormKind::Instance
        } else {
            NormKind::None
        };
        return Ok(GeneratorConfig {
            arch: GeneratorArch::Unet {
                num_downs: inner + 1,
            },
            input_nc,
            output_nc: last[1],
            ngf,
            norm,
            dropout: false,
        });
    }
    if let Some(first) = shape("model.1.weight").filter(|s| s.len() >= 4 && s[2] == 7) {
        let volumetric = first.len() == 5;
        let blocks: HashSet<usize> = keys
            .iter()
            .filter_map(|k| {
                k.strip_prefix("model.")?
                    .split_once(".conv_block.")?
                    .0
                    .parse()
                    .ok()
            })
            .collect();
        let n_blocks = blocks.len();
        let dropout = keys.iter().any(|k| k.contains(".conv_block.6.weight"));
        let norm = if keys.contains("model.2.weight") {
            NormKind::Batch
        } else if keys.contains("model.1.bias") {
            NormKind::Instance
        } else {
            NormKind::None
        };
        let head = shape(&format!("model.{}.weight", 10 + n_blocks + 7))
            .ok_or("ResNet generator without its 7x7 output conv")?;
        // The 3D reference pads by replication.
        let arch = if volumetric {
            GeneratorArch::Resnet3d {
                n_blocks,
                replicate: true,
            }
        } else {
            GeneratorArch::Resnet { n_blocks }
        };
        return Ok(GeneratorConfig {
            arch,
            input_nc: first[1],
            output_nc: head[0],
            ngf: first[0],
            norm,
            dropout,
        });
    }
    Err("the keys match no known generator (expected model.model.0.weight for a U-Net or model.1.weight for a ResNet)".into())
}

/// Copies a state_dict into `net`. Every parameter and batch-norm statistic must be present
/// with its shape; `num_batches_tracked` and the old instance-norm running statistics are
/// ignored; any other extra key is an error. The message names the first offending key.
pub fn load_state_dict(net: &mut dyn Network, sd: &StateDict) -> Result<(), String> {
    let find = |k: &str| {
        sd.tensors
            .iter()
            .find(|(n, _)| strip_prefixes(n) == k)
            .map(|(_, t)| t)
    };
    let mut used: HashSet<String> = HashSet::new();
    let entries = net.arena().entries().to_vec();
    for (i, e) in entries.iter().enumerate() {
        let t = find(&e.name).ok_or_else(|| {
            format!(
                "the checkpoint has no {} (shape {}) that this architecture needs",
                e.name, e.shape
            )
        })?;
        if t.shape != e.shape.dims() {
            return Err(format!(
                "{} has shape {:?} in the checkpoint, the architecture expects {}",
                e.name, t.shape, e.shape
            ));
        }
        net.arena_mut()
            .value_mut(crate::nn::params::ParamId(i))
            .copy_from_slice(&t.data);
        used.insert(e.name.clone());
    }
    for norm in net.norms_mut() {
        if let Some(stats) = norm.stats.as_mut() {
            let mut loaded = Vec::with_capacity(2);
            for suffix in ["running_mean", "running_var"] {
                let key = format!("{}.{suffix}", norm.name);
                let t = find(&key).ok_or_else(|| {
                    format!("the checkpoint has no {key} that this architecture's batch norm needs")
                })?;
                if t.data.len() != stats.channels() {
                    return Err(format!(
                        "{key} has {} values, the architecture expects {}",
                        t.data.len(),
                        stats.channels()
                    ));
                }
                loaded.push(t.data.clone());
                used.insert(key);
            }
            let var = loaded.pop().expect("two statistics");
            let mean = loaded.pop().expect("two statistics");
            stats.load(mean, var).map_err(|e| e.to_string())?;
        }
    }
    for (k, _) in &sd.tensors {
        let k = strip_prefixes(k);
        let ignorable = k.ends_with("num_batches_tracked")
            || k.ends_with("running_mean")
            || k.ends_with("running_var");
        if !used.contains(k) && !ignorable {
            return Err(format!(
                "the checkpoint's {k} has no place in this architecture"
            ));
        }
    }
    Ok(())
}
