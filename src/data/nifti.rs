//! NIfTI-1 reading and writing (`.nii`, `.nii.gz`) on top of the `nifti` crate.
//!
//! Reading validates before it allocates: the header is parsed from the first 352 bytes,
//! dims and datatype are checked, and only then is the voxel data read, never more than the
//! header announces. Writing goes through a temporary file in the target folder that is
//! renamed into place, so a failed write leaves no half-written volume.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use ndarray::ShapeBuilder;
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiType};

use super::error::{DataError, DataResult};
use super::orientation::{Affine, Reorientation};
use super::volume::{Volume, VolumeMeta};

/// More voxels than this in one volume is taken for a corrupt header (4 GiB of f32).
const MAX_VOXELS: usize = 1 << 30;
/// NIfTI-1 header plus the 4-byte extension flag.
const HEADER_LEN: usize = 352;

/// Which orientation a read volume is processed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OrientationMode {
    /// Reoriented to RAS+ (the default), so every subject's axes mean the same.
    #[default]
    Canonical,
    /// The voxel array exactly as stored.
    AsStored,
}

/// Options for [`read`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// For a 4D file: which volume (0-based). Without it a 4D file is an error.
    pub volume: Option<usize>,
    pub orientation: OrientationMode,
}

/// Datatype of a written volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutDtype {
    #[default]
    Float32,
    /// The datatype of the volume's source file.
    Input,
    Uint8,
    Int16,
    Int32,
    Float64,
}

impl std::str::FromStr for OutDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "float32" => OutDtype::Float32,
            "input" => OutDtype::Input,
            "uint8" => OutDtype::Uint8,
            "int16" => OutDtype::Int16,
            "int32" => OutDtype::Int32,
            "float64" => OutDtype::Float64,
            _ => {
                return Err(format!(
                    "unknown datatype {s:?}: use float32, input, uint8, int16, int32 or float64"
                ));
            }
        })
    }
}

/// True for `.nii` and `.nii.gz` names.
pub fn is_nifti_path(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// The file name without `.nii` / `.nii.gz`.
pub fn stem(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.trim_end_matches(".gz")
        .trim_end_matches(".nii")
        .to_string()
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn datatype_name(t: NiftiType) -> &'static str {
    match t {
        NiftiType::Uint8 => "uint8",
        NiftiType::Int8 => "int8",
        NiftiType::Int16 => "int16",
        NiftiType::Uint16 => "uint16",
        NiftiType::Int32 => "int32",
        NiftiType::Uint32 => "uint32",
        NiftiType::Float32 => "float32",
        NiftiType::Float64 => "float64",
        _ => "unsupported",
    }
}

/// Reads a volume, applying `scl_slope`/`scl_inter`, and brings it to the requested orientation.
pub fn read(path: &Path, opts: &ReadOptions) -> DataResult<Volume> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 2];
    let mut peek = file.take(2);
    peek.read_exact(&mut magic)
        .map_err(|_| DataError::invalid(path, "file is empty or shorter than a NIfTI header"))?;
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut stream: Box<dyn Read> = if is_gzip(&magic) {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let corrupt =
        |e: std::io::Error| DataError::invalid(path, format!("truncated or corrupt data ({e})"));

    let mut head = vec![0u8; HEADER_LEN];
    stream.read_exact(&mut head).map_err(corrupt)?;
    let header = NiftiHeader::from_reader(Cursor::new(&head))
        .map_err(|e| DataError::invalid(path, format!("not a NIfTI-1 file: {e}")))?;
    let (dims, frames) = checked_dims(path, &header, opts.volume)?;
    let datatype = header.data_type().map_err(|_| {
        DataError::invalid(path, format!("unknown datatype code {}", header.datatype))
    })?;
    if datatype_name(datatype) == "unsupported" {
        return Err(DataError::invalid(
            path,
            format!(
                "unsupported datatype {datatype:?}: expected uint8, int8, int16, uint16, int32, uint32, float32 or float64"
            ),
        ));
    }
    let voxel_bytes = datatype.size_of();
    let frame_voxels: usize = dims.iter().product();
    let offset = header.vox_offset as usize;
    if offset < HEADER_LEN {
        return Err(DataError::invalid(
            path,
            format!("vox_offset {} points inside the header", header.vox_offset),
        ));
    }
    // Skip extensions, then the frames before the requested one.
    let skip = (offset - HEADER_LEN) + opts.volume.unwrap_or(0) * frame_voxels * voxel_bytes;
    std::io::copy(&mut (&mut stream).take(skip as u64), &mut std::io::sink()).map_err(corrupt)?;
    let wanted = frame_voxels * voxel_bytes;
    let mut raw = Vec::new();
    (&mut stream)
        .take(wanted as u64)
        .read_to_end(&mut raw)
        .map_err(corrupt)?;
    if raw.len() < wanted {
        return Err(DataError::invalid(
            path,
            format!(
                "truncated: the header announces {wanted} bytes of voxels{}, the file holds {}",
                frame_text(frames, opts.volume),
                raw.len()
            ),
        ));
    }

    let mut frame_header = header.clone();
    frame_header.dim = [
        3,
        dims[0] as u16,
        dims[1] as u16,
        dims[2] as u16,
        1,
        1,
        1,
        1,
    ];
    let stored = nifti::InMemNiftiVolume::from_raw_data(&frame_header, raw)
        .and_then(|v| v.into_ndarray::<f32>())
        .map_err(|e| DataError::invalid(path, format!("cannot decode voxels: {e}")))?;
    // F-ordered array: memory order is NIfTI order (first axis fastest).
    let stored: Vec<f32> = stored
        .as_slice_memory_order()
        .map(<[f32]>::to_vec)
        .unwrap_or_else(|| stored.t().iter().copied().collect());
    if let Some(bad) = stored.iter().position(|v| !v.is_finite()) {
        let count = stored.iter().filter(|v| !v.is_finite()).count();
        let (x, y, z) = (
            bad % dims[0],
            (bad / dims[0]) % dims[1],
            bad / (dims[0] * dims[1]),
        );
        return Err(DataError::invalid(
            path,
            format!("{count} voxels are NaN or infinite (the first at voxel ({x}, {y}, {z}))"),
        ));
    }

    let reorientation = match opts.orientation {
        OrientationMode::AsStored => Reorientation::IDENTITY,
        OrientationMode::Canonical => {
            Reorientation::to_canonical(&affine(&header)).ok_or_else(|| {
                DataError::invalid(path, "the affine maps two voxel axes onto one world axis")
            })?
        }
    };
    Ok(Volume {
        dims: reorientation.apply_dims(dims),
        data: reorientation.apply(&stored, dims),
        meta: VolumeMeta {
            source: path.to_path_buf(),
            header,
            stored_dims: dims,
            reorientation,
        },
    })
}

fn frame_text(frames: usize, volume: Option<usize>) -> String {
    match volume {
        Some(v) if frames > 1 => format!(" for volume {v} of {frames}"),
        _ => String::new(),
    }
}

/// The spatial dims and the number of volumes (4th dim), after validation.
fn checked_dims(
    path: &Path,
    header: &NiftiHeader,
    volume: Option<usize>,
) -> DataResult<([usize; 3], usize)> {
    let rank = header.dim[0] as usize;
    if !(1..=7).contains(&rank) {
        return Err(DataError::invalid(
            path,
            format!(
                "dim[0] = {} is not a valid number of dimensions",
                header.dim[0]
            ),
        ));
    }
    let dims: Vec<usize> = header.dim[1..=rank].iter().map(|&d| d as usize).collect();
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(DataError::invalid(
            path,
            format!("dimension {} is zero (dims {dims:?})", i + 1),
        ));
    }
    if rank < 3 || dims[3.min(rank)..].iter().skip(1).any(|&d| d > 1) {
        return Err(DataError::invalid(
            path,
            format!("expected a 3D volume (optionally 4D), got dims {dims:?}"),
        ));
    }
    let frames = dims.get(3).copied().unwrap_or(1);
    match volume {
        None if frames > 1 => {
            return Err(DataError::invalid(
                path,
                format!("is 4D with {frames} volumes: choose one with a volume index"),
            ));
        }
        Some(v) if v >= frames => {
            return Err(DataError::invalid(
                path,
                format!("volume index {v} is out of range: the file has {frames} volume(s)"),
            ));
        }
        _ => {}
    }
    let spatial = [dims[0], dims[1], dims[2]];
    let voxels = spatial.iter().product::<usize>().saturating_mul(frames);
    if voxels > MAX_VOXELS {
        return Err(DataError::invalid(
            path,
            format!("dims {dims:?} give {voxels} voxels, more than the {MAX_VOXELS} allowed"),
        ));
    }
    Ok((spatial, frames))
}

/// The voxel-to-world affine: sform when its code is set, else qform, else pixdim scaling.
pub fn affine(h: &NiftiHeader) -> Affine {
    if h.sform_code > 0 {
        return [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(f64::from));
    }
    let pix = h.pixdim.map(f64::from);
    if h.qform_code <= 0 {
        return [
            [pix[1], 0.0, 0.0, 0.0],
            [0.0, pix[2], 0.0, 0.0],
            [0.0, 0.0, pix[3], 0.0],
        ];
    }
    // NIfTI-1 quaternion to rotation (nifti1.h, method 2).
    let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
    let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let qfac = if pix[0] < 0.0 { -1.0 } else { 1.0 };
    let scale = [pix[1], pix[2], pix[3] * qfac];
    let offset = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
    std::array::from_fn(|i| {
        [
            r[i][0] * scale[0],
            r[i][1] * scale[1],
            r[i][2] * scale[2],
            offset[i],
        ]
    })
}

/// Writes `vol` in its source file's orientation and header (affine, codes, pixdim, units),
/// as `dtype`. Integer types store values rounded and clamped to the type, with
/// scl_slope 1 and scl_inter 0.
pub fn write(path: &Path, vol: &Volume, dtype: OutDtype) -> DataResult<()> {
    let stored = vol.stored_data();
    let [nx, ny, nz] = vol.meta.stored_dims;
    let mut header = vol.meta.header.clone();
    header.dim = [3, nx as u16, ny as u16, nz as u16, 1, 1, 1, 1];
    let target = match dtype {
        OutDtype::Float32 => NiftiType::Float32,
        OutDtype::Input => header.data_type().unwrap_or(NiftiType::Float32),
        OutDtype::Uint8 => NiftiType::Uint8,
        OutDtype::Int16 => NiftiType::Int16,
        OutDtype::Int32 => NiftiType::Int32,
        OutDtype::Float64 => NiftiType::Float64,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let suffix = if path.to_string_lossy().ends_with(".gz") {
        ".nii.gz"
    } else {
        ".nii"
    };
    let tmp = crate::report::temp_file_in(&dir, suffix).map_err(|e| DataError::io(&dir, e))?;
    let writer = WriterOptions::new(tmp.path()).reference_header(&header);
    let shape = (nx, ny, nz).f();
    fn rounded<T>(v: &[f32], lo: f64, hi: f64, cast: impl Fn(f64) -> T) -> Vec<T> {
        v.iter()
            .map(|&x| cast((x as f64).round().clamp(lo, hi)))
            .collect()
    }
    let result = match target {
        NiftiType::Uint8 => write_array(&writer, shape, rounded(&stored, 0.0, 255.0, |v| v as u8)),
        NiftiType::Int8 => {
            write_array(&writer, shape, rounded(&stored, -128.0, 127.0, |v| v as i8))
        }
        NiftiType::Int16 => write_array(
            &writer,
            shape,
            rounded(&stored, i16::MIN as f64, i16::MAX as f64, |v| v as i16),
        ),
        NiftiType::Uint16 => write_array(
            &writer,
            shape,
            rounded(&stored, 0.0, u16::MAX as f64, |v| v as u16),
        ),
        NiftiType::Int32 => write_array(
            &writer,
            shape,
            rounded(&stored, i32::MIN as f64, i32::MAX as f64, |v| v as i32),
        ),
        NiftiType::Uint32 => write_array(
            &writer,
            shape,
            rounded(&stored, 0.0, u32::MAX as f64, |v| v as u32),
        ),
        NiftiType::Float64 => {
            write_array(&writer, shape, stored.iter().map(|&v| v as f64).collect())
        }
        _ => write_array(&writer, shape, stored),
    };
    result.map_err(|e| DataError::invalid(path, format!("cannot write NIfTI: {e}")))?;
    tmp.persist(path)
        .map_err(|e| DataError::io(path, e.error))?;
    Ok(())
}

fn write_array<T: nifti::DataElement + bytemuck::Pod>(
    writer: &WriterOptions<'_>,
    shape: ndarray::Shape<ndarray::Ix3>,
    data: Vec<T>,
) -> nifti::Result<()> {
    let array = ndarray::Array3::from_shape_vec(shape, data).expect("shape matches voxel count");
    writer.write_nifti(&array)
}
