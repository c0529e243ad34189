//! mrgan's native checkpoint files: safetensors with a network's parameters under their
//! reference names plus batch-norm running statistics (`<norm>.running_mean` / `.running_var`),
//! and a second file with Adam's moments. Every file is written atomically.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::data::DataError;
use crate::error::{Error, Result};
use crate::nn::nets::Network;
use crate::optim::adam::Adam;
use crate::report::write_atomic;

fn invalid(path: &Path, msg: impl Into<String>) -> Error {
    Error::Data(DataError::invalid(path, msg))
}

/// Tensors by name: shape and values.
pub type NamedTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Serialises named f32 tensors (name, shape, values) with `metadata` and writes them atomically.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .expect("shape matches data");
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| invalid(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, |w| w.write_all(&bytes)).map_err(|e| Error::Data(DataError::io(path, e)))
}

/// Reads every f32 tensor of a safetensors file, with its metadata.
pub fn read_tensors(path: &Path) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Data(DataError::io(path, e)))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| invalid(path, format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| invalid(path, format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(invalid(
                path,
                format!("tensor {name} is {:?}, expected F32", view.dtype()),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), data));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// A named tensor on the host: (name, shape, values).
pub type HostTensor = (String, Vec<usize>, Vec<f32>);

/// A network's state as (name, shape, values), in the reference's state_dict order:
/// parameters, then each batch norm's running statistics; with `batch_counters`, also a
/// zero `num_batches_tracked` per batch norm (PyTorch's strict loading expects it).
pub fn state_tensors(net: &mut dyn Network, batch_counters: bool) -> Result<Vec<HostTensor>> {
    let mut out: Vec<HostTensor> = {
        let arena = net.arena();
        let values = arena.values_to_vec()?;
        arena
            .entries()
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    e.shape.dims().to_vec(),
                    values[e.range()].to_vec(),
                )
            })
            .collect()
    };
    for n in net.norms_mut() {
        if let Some(s) = &n.stats {
            out.push((
                format!("{}.running_mean", n.name),
                vec![s.channels()],
                s.mean.to_vec()?,
            ));
            out.push((
                format!("{}.running_var", n.name),
                vec![s.channels()],
                s.var.to_vec()?,
            ));
            if batch_counters {
                out.push((format!("{}.num_batches_tracked", n.name), vec![], vec![0.0]));
            }
        }
    }
    Ok(out)
}

/// Borrowed views of [`state_tensors`] for the writers.
pub fn as_views(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<(String, Vec<usize>, &[f32])> {
    tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), &d[..]))
        .collect()
}

/// Writes a network's parameters and running statistics.
pub fn save_network(path: &Path, net: &mut dyn Network) -> Result<()> {
    let tensors = state_tensors(net, false)?;
    let meta = HashMap::from([("format".to_string(), "mrgan-network".to_string())]);
    write_tensors(path, &as_views(&tensors), meta)
}

/// Loads parameters and running statistics saved by [`save_network`] into a network of the
/// same architecture; a missing or differently shaped tensor is an error naming it.
pub fn load_network(path: &Path, net: &mut dyn Network) -> Result<()> {
    let (tensors, _) = read_tensors(path)?;
    let take = |name: &str, shape: &[usize]| -> Result<&Vec<f32>> {
        let (s, data) = tensors
            .get(name)
            .ok_or_else(|| invalid(path, format!("has no tensor {name}")))?;
        if s != shape {
            return Err(invalid(
                path,
                format!("tensor {name} has shape {s:?}, the network expects {shape:?}"),
            ));
        }
        Ok(data)
    };
    let entries = net.arena().entries().to_vec();
    let mut values = net.arena().values_to_vec()?;
    for e in &entries {
        values[e.range()].copy_from_slice(take(&e.name, e.shape.dims())?);
    }
    net.arena_mut().load_values(&values)?;
    for norm in net.norms_mut() {
        if let Some(stats) = norm.stats.as_mut() {
            let c = stats.channels();
            let mean = take(&format!("{}.running_mean", norm.name), &[c])?.clone();
            let var = take(&format!("{}.running_var", norm.name), &[c])?.clone();
            stats.load(mean, var)?;
        }
    }
    Ok(())
}

/// Writes Adam's moments and step count.
pub fn save_adam(path: &Path, adam: &Adam) -> Result<()> {
    let (m, v) = adam.moments()?;
    let meta = HashMap::from([("steps".to_string(), adam.steps().to_string())]);
    write_tensors(
        path,
        &[
            ("m".into(), vec![m.len()], &m),
            ("v".into(), vec![v.len()], &v),
        ],
        meta,
    )
}

/// Restores Adam saved by [`save_adam`].
pub fn load_adam(path: &Path, adam: &mut Adam) -> Result<()> {
    let (t, meta) = read_tensors(path)?;
    let steps = meta
        .get("steps")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(path, "has no step count"))?;
    let get = |k: &str| {
        t.get(k)
            .map(|x| &x.1)
            .ok_or_else(|| invalid(path, format!("has no tensor {k}")))
    };
    adam.restore(get("m")?, get("v")?, steps)
}
