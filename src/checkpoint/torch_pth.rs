//! Reading and writing PyTorch `torch.save(state_dict)` files without Python: the zip
//! container (PyTorch >= 1.6) and the legacy container, through the restricted unpickler in
//! `pickle.rs`. Tensors come back as f32 in C order, whatever their storage type, offset
//! and strides.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use super::pickle::{DType, TensorRef, Value, unpickle};
use crate::data::DataError;
use crate::error::{Error, Result};

/// One tensor of a state_dict.
#[derive(Clone, Debug, PartialEq)]
pub struct PthTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// The storage's element type on disk.
    pub dtype: DType,
}

/// A state_dict in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    pub tensors: Vec<(String, PthTensor)>,
}

impl StateDict {
    pub fn get(&self, name: &str) -> Option<&PthTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

fn invalid(path: &Path, msg: impl Into<String>) -> Error {
    Error::Data(DataError::invalid(path, msg))
}

/// Reads a `.pth` file.
pub fn read(path: &Path) -> Result<StateDict> {
    let bytes = std::fs::read(path).map_err(|e| Error::Data(DataError::io(path, e)))?;
    read_bytes(&bytes, path)
}

/// Reads `.pth` content; `path` only names it in errors. Never panics on bad input.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<StateDict> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes, path)
    } else if bytes.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
        read_legacy(bytes, path)
    } else {
        Err(invalid(
            path,
            "is neither a zip nor a legacy torch.save file",
        ))
    }
}

/// Strips the prefixes wrappers leave on keys (`module.` from DataParallel, `_orig_mod.`
/// from torch.compile).
pub fn strip_prefixes(name: &str) -> &str {
    let mut n = name;
    loop {
        match n
            .strip_prefix("module.")
            .or_else(|| n.strip_prefix("_orig_mod."))
        {
            Some(rest) => n = rest,
            None => return n,
        }
    }
}

/// The (key, tensor) entries of the unpickled root dict.
fn entries(root: Value, path: &Path) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(items) = root else {
        return Err(invalid(
            path,
            "does not hold a state_dict (its root is not a dict)",
        ));
    };
    let mut out = Vec::new();
    for (k, v) in items {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => out.push((k, t)),
            (Value::Str(k), other) => {
                return Err(invalid(
                    path,
                    format!("entry {k} is not a tensor ({other:?})"),
                ));
            }
            (k, _) => return Err(invalid(path, format!("key {k:?} is not a string"))),
        }
    }
    Ok(out)
}

/// Gathers a tensor from its storage's raw bytes, checking every index stays inside.
fn materialize(
    name: &str,
    t: &TensorRef,
    storage: &[u8],
    base_offset: usize,
    path: &Path,
) -> Result<PthTensor> {
    let d = t.storage.dtype;
    let available = storage.len() / d.size();
    if t.storage.numel + base_offset > available {
        return Err(invalid(
            path,
            format!(
                "{name}: storage {} announces {} elements, the record holds {available}",
                t.storage.key, t.storage.numel
            ),
        ));
    }
    if t.shape.len() != t.stride.len() {
        return Err(invalid(
            path,
            format!(
                "{name}: size {:?} and stride {:?} differ in rank",
                t.shape, t.stride
            ),
        ));
    }
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| invalid(path, format!("{name}: size {:?} overflows", t.shape)))?;
    if numel > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&s, &st)| {
                acc.checked_add((s - 1).checked_mul(st)?)
            });
        if last.is_none_or(|l| l >= t.storage.numel) {
            return Err(invalid(
                path,
                format!(
                    "{name}: size {:?} stride {:?} offset {} reach past its storage of {} elements",
                    t.shape, t.stride, t.offset, t.storage.numel
                ),
            ));
        }
    }
    let values =
        d.decode(&storage[base_offset * d.size()..(base_offset + t.storage.numel) * d.size()]);
    let mut data = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        data.push(values[at]);
        for a in (0..index.len()).rev() {
            index[a] += 1;
            if index[a] < t.shape[a] {
                break;
            }
            index[a] = 0;
        }
    }
    Ok(PthTensor {
        shape: t.shape.clone(),
        data,
        dtype: d,
    })
}

fn read_zip(bytes: &[u8], path: &Path) -> Result<StateDict> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| invalid(path, format!("bad zip container: {e}")))?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|c| c.into_owned()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| invalid(path, format!("bad zip entry name: {e}")))?;
    if let Some(bad) = names
        .iter()
        .find(|n| n.split('/').any(|c| c == "..") || n.starts_with('/'))
    {
        return Err(invalid(
            path,
            format!("zip entry {bad:?} escapes the archive"),
        ));
    }
    let root = names
        .first()
        .and_then(|n| n.split('/').next())
        .ok_or_else(|| invalid(path, "empty zip container"))?
        .to_string();
    let mut record = |name: &str| -> Result<Vec<u8>> {
        let full = format!("{root}/{name}");
        let mut f = archive
            .by_name(&full)
            .map_err(|_| invalid(path, format!("has no record {full}")))?;
        if f.size() > bytes.len() as u64 {
            return Err(invalid(
                path,
                format!(
                    "record {full} claims {} bytes, more than the file",
                    f.size()
                ),
            ));
        }
        let mut out = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut out)
            .map_err(|e| invalid(path, format!("cannot read record {full}: {e}")))?;
        Ok(out)
    };
    let pickle = record("data.pkl")?;
    // Files from torch 1.x have no byteorder record (and are little-endian).
    if record("byteorder").is_ok_and(|order| order != b"little") {
        return Err(invalid(path, "big-endian checkpoints are not supported"));
    }
    let (root_value, _) = unpickle(&pickle).map_err(|e| invalid(path, format!("data.pkl: {e}")))?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::new();
    for (name, t) in entries(root_value, path)? {
        if !storages.contains_key(&t.storage.key) {
            storages.insert(
                t.storage.key.clone(),
                record(&format!("data/{}", t.storage.key))?,
            );
        }
        let tensor = materialize(&name, &t, &storages[&t.storage.key], 0, path)?;
        tensors.push((name, tensor));
    }
    Ok(StateDict { tensors })
}

fn read_legacy(bytes: &[u8], path: &Path) -> Result<StateDict> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value> {
        let (v, used) =
            unpickle(&bytes[pos..]).map_err(|e| invalid(path, format!("legacy {what}: {e}")))?;
        pos += used;
        Ok(v)
    };
    // 0x1950a86a20f9469cfc6c; the unpickler keeps the low 64 bits of long integers.
    const MAGIC_LOW: u64 = 0xa86a_20f9_469c_fc6c;
    if next("magic number")? != Value::Int(MAGIC_LOW as i64) {
        return Err(invalid(path, "bad legacy magic number"));
    }
    if next("protocol version")? != Value::Int(1001) {
        return Err(invalid(path, "unsupported legacy protocol version"));
    }
    next("system info")?;
    let root = next("state_dict")?;
    let keys = match next("storage keys")? {
        Value::List(k) => k,
        _ => return Err(invalid(path, "legacy storage key list missing")),
    };
    let entries = entries(root, path)?;
    let dtypes: HashMap<String, DType> = entries
        .iter()
        .map(|(_, t)| {
            (
                t.storage
                    .view_of
                    .as_ref()
                    .map_or(t.storage.key.clone(), |v| v.0.clone()),
                t.storage.dtype,
            )
        })
        .collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(invalid(path, "legacy storage key is not a string"));
        };
        let dtype = *dtypes
            .get(&key)
            .ok_or_else(|| invalid(path, format!("storage {key} is used by no tensor")))?;
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| invalid(path, format!("truncated before storage {key}")))?;
        let count = i64::from_le_bytes(count_bytes.try_into().expect("8 bytes"));
        pos += 8;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size()))
            .filter(|&l| l <= bytes.len() - pos)
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("storage {key} announces {count} elements, more than the file holds"),
                )
            })?;
        storages.insert(key, bytes[pos..pos + len].to_vec());
        pos += len;
    }
    let tensors = entries
        .iter()
        .map(|(name, t)| {
            let (key, offset) = t
                .storage
                .view_of
                .clone()
                .unwrap_or((t.storage.key.clone(), 0));
            let raw = storages
                .get(&key)
                .ok_or_else(|| invalid(path, format!("{name}: storage {key} missing")))?;
            Ok((name.clone(), materialize(name, t, raw, offset, path)?))
        })
        .collect::<Result<_>>()?;
    Ok(StateDict { tensors })
}

/// Pickle opcodes the writer emits (protocol 2, what torch.save writes).
fn pickle_state_dict(tensors: &[(String, Vec<usize>, DType)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn int(out: &mut Vec<u8>, v: usize) {
        out.push(b'J');
        out.extend((v as i32).to_le_bytes());
    }
    fn tuple(out: &mut Vec<u8>, items: &[usize]) {
        out.push(b'(');
        items.iter().for_each(|&v| int(out, v));
        out.push(b't');
    }
    let mut p = vec![0x80, 2];
    p.extend(b"ccollections\nOrderedDict\n)R(");
    for (i, (name, shape, dtype)) in tensors.iter().enumerate() {
        string(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        string(&mut p, "storage");
        p.extend(if *dtype == DType::I64 {
            &b"ctorch\nLongStorage\n"[..]
        } else {
            &b"ctorch\nFloatStorage\n"[..]
        });
        string(&mut p, &i.to_string());
        string(&mut p, "cpu");
        int(&mut p, shape.iter().product());
        p.extend(b"tQ");
        int(&mut p, 0);
        tuple(&mut p, shape);
        let mut stride = vec![1usize; shape.len()];
        for a in (0..shape.len().saturating_sub(1)).rev() {
            stride[a] = stride[a + 1] * shape[a + 1];
        }
        tuple(&mut p, &stride);
        p.extend(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend(b"u.");
    p
}

/// Writes tensors as a `torch.save` zip file that `torch.load` reads back as a state_dict
/// (written atomically). Tensors named `*num_batches_tracked` are stored as int64, as
/// PyTorch keeps them; everything else as float32.
pub fn write(path: &Path, tensors: &[(String, Vec<usize>, &[f32])]) -> Result<()> {
    let dtype = |n: &str| {
        if n.ends_with("num_batches_tracked") {
            DType::I64
        } else {
            DType::F32
        }
    };
    let root = crate::data::nifti::stem(path)
        .trim_end_matches(".pth")
        .trim_end_matches(".pt")
        .to_string();
    let root = if root.is_empty() {
        "archive".to_string()
    } else {
        root
    };
    let shapes: Vec<(String, Vec<usize>, DType)> = tensors
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone(), dtype(n)))
        .collect();
    let mut buffer = Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .with_alignment(64);
        let mut add = |name: &str, data: &[u8]| -> zip::result::ZipResult<()> {
            zip.start_file(format!("{root}/{name}"), opts)?;
            zip.write_all(data)?;
            Ok(())
        };
        let z = |e: zip::result::ZipError| invalid(path, format!("cannot build the zip: {e}"));
        add("data.pkl", &pickle_state_dict(&shapes)).map_err(z)?;
        add("byteorder", b"little").map_err(z)?;
        for (i, (name, _, data)) in tensors.iter().enumerate() {
            let raw: Vec<u8> = match dtype(name) {
                DType::I64 => data
                    .iter()
                    .flat_map(|&v| (v as i64).to_le_bytes())
                    .collect(),
                _ => bytemuck::cast_slice(data).to_vec(),
            };
            add(&format!("data/{i}"), &raw).map_err(z)?;
        }
        add("version", b"3\n").map_err(z)?;
        zip.finish().map_err(z)?;
    }
    let bytes = buffer.into_inner();
    crate::report::write_atomic(path, |w| w.write_all(&bytes))
        .map_err(|e| Error::Data(DataError::io(path, e)))
}
