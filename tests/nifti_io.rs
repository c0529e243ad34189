//! NIfTI reading and writing: round trips for every datatype, orientation, scaling, 4D
//! files, the real data set, and a clear error for every kind of bad input.

use std::path::{Path, PathBuf};

use mrgan::data::DataError;
use mrgan::data::nifti::{OrientationMode, OutDtype, ReadOptions, read, write};
use mrgan::data::volume::Volume;

fn ramp(dims: [usize; 3], scale: f32, offset: f32) -> Volume {
    let n: usize = dims.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 251) as f32 * scale + offset)
        .collect();
    Volume::new_ras(dims, data, [1.5, 1.0, 2.5], "test ramp")
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Overwrites `bytes` at `offset` of an uncompressed `.nii`.
fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}

fn error_of(path: &Path, opts: &ReadOptions) -> String {
    let err = read(path, opts).expect_err("bad input must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error must name the file: {msg}"
    );
    msg
}

#[test]
fn round_trip_every_datatype_and_header() {
    let dir = tmp();
    let cases = [
        (OutDtype::Uint8, 1.0, 0.0, 2i16),
        (OutDtype::Int16, 3.0, -300.0, 4),
        (OutDtype::Int32, 1000.0, -12345.0, 8),
        (OutDtype::Float32, 0.37, -1.5, 16),
        (OutDtype::Float64, 0.25, 3.0, 64),
    ];
    for (dtype, scale, offset, code) in cases {
        for ext in ["nii", "nii.gz"] {
            let vol = ramp([7, 5, 4], scale, offset);
            let path = dir.path().join(format!("v{code}.{ext}"));
            write(&path, &vol, dtype).unwrap();
            let back = read(&path, &ReadOptions::default()).unwrap();
            assert_eq!(back.data, vol.data, "{dtype:?} .{ext}: voxels");
            assert_eq!(back.dims, vol.dims);
            let (h, g) = (&back.meta.header, &vol.meta.header);
            assert_eq!(h.datatype, code, "{dtype:?}: datatype on disk");
            assert_eq!(
                (h.pixdim, h.qform_code, h.sform_code),
                (g.pixdim, g.qform_code, g.sform_code)
            );
            assert_eq!(
                (h.srow_x, h.srow_y, h.srow_z, h.xyzt_units),
                (g.srow_x, g.srow_y, g.srow_z, g.xyzt_units)
            );
            // A second trip with the input's own datatype changes nothing.
            let again = dir.path().join(format!("again{code}.{ext}"));
            write(&again, &back, OutDtype::Input).unwrap();
            let back2 = read(&again, &ReadOptions::default()).unwrap();
            assert_eq!(back2.data, vol.data);
            assert_eq!(back2.meta.header.datatype, code);
        }
    }
}

#[test]
fn integer_outputs_round_and_clamp() {
    let dir = tmp();
    let vol = Volume::new_ras([3, 1, 1], vec![-7.6, 2.4, 300.0], [1.0; 3], "t");
    let path = dir.path().join("u8.nii");
    write(&path, &vol, OutDtype::Uint8).unwrap();
    assert_eq!(
        read(&path, &ReadOptions::default()).unwrap().data,
        vec![0.0, 2.0, 255.0]
    );
}

/// An LPS volume (like most of the real data) is flipped on its first two axes for
/// processing and written back in its own order.
#[test]
fn canonical_orientation_and_back() {
    let dir = tmp();
    let mut vol = ramp([4, 3, 2], 1.0, 0.0);
    let h = &mut vol.meta.header;
    h.srow_x = [-1.0, 0.0, 0.0, 3.0];
    h.srow_y = [0.0, -1.0, 0.0, 2.0];
    h.qform_code = 0;
    let path = dir.path().join("lps.nii.gz");
    write(&path, &vol, OutDtype::Float32).unwrap();

    let stored = read(
        &path,
        &ReadOptions {
            orientation: OrientationMode::AsStored,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(stored.data, vol.data);
    assert_eq!(stored.stored_orientation(), "LPS");
    let canon = read(&path, &ReadOptions::default()).unwrap();
    for (x, y, z) in [(0, 0, 0), (1, 2, 1), (3, 1, 0)] {
        assert_eq!(
            canon.get(x, y, z),
            vol.get(3 - x, 2 - y, z),
            "voxel ({x},{y},{z})"
        );
    }
    let out = dir.path().join("back.nii.gz");
    write(&out, &canon, OutDtype::Float32).unwrap();
    let back = read(
        &out,
        &ReadOptions {
            orientation: OrientationMode::AsStored,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        back.data, vol.data,
        "written back in the input's own orientation"
    );
    assert_eq!(back.meta.header.srow_x, [-1.0, 0.0, 0.0, 3.0]);
}

#[test]
fn qform_only_affine_is_used() {
    let dir = tmp();
    let mut vol = ramp([3, 3, 3], 1.0, 0.0);
    let h = &mut vol.meta.header;
    h.sform_code = 0;
    h.qform_code = 1;
    // Quaternion (b, c, d) = (0, 0, 1): 180 degrees about z, i.e. x -> -x, y -> -y.
    (h.quatern_b, h.quatern_c, h.quatern_d) = (0.0, 0.0, 1.0);
    let path = dir.path().join("q.nii");
    write(&path, &vol, OutDtype::Float32).unwrap();
    assert_eq!(
        read(&path, &ReadOptions::default())
            .unwrap()
            .stored_orientation(),
        "LPS"
    );
}

#[test]
fn scl_slope_and_inter_are_applied() {
    let dir = tmp();
    let vol = Volume::new_ras([2, 2, 1], vec![0.0, 1.0, 2.0, 3.0], [1.0; 3], "t");
    let path = dir.path().join("scaled.nii");
    write(&path, &vol, OutDtype::Int16).unwrap();
    patch(&path, 112, &2.5f32.to_le_bytes());
    patch(&path, 116, &10.0f32.to_le_bytes());
    assert_eq!(
        read(&path, &ReadOptions::default()).unwrap().data,
        vec![10.0, 12.5, 15.0, 17.5]
    );
}

fn write_4d(path: &Path) {
    let frames: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32).collect();
    let header = ramp([2, 3, 2], 1.0, 0.0).meta.header;
    let array =
        ndarray::Array4::from_shape_vec(ndarray::ShapeBuilder::f((2, 3, 2, 2)), frames).unwrap();
    nifti::writer::WriterOptions::new(path)
        .reference_header(&header)
        .write_nifti(&array)
        .unwrap();
}

#[test]
fn four_d_needs_a_volume_index() {
    let dir = tmp();
    let path = dir.path().join("4d.nii.gz");
    write_4d(&path);
    let msg = error_of(&path, &ReadOptions::default());
    assert!(msg.contains("4D") && msg.contains("2 volumes"), "{msg}");
    let second = read(
        &path,
        &ReadOptions {
            volume: Some(1),
            orientation: OrientationMode::AsStored,
        },
    )
    .unwrap();
    assert_eq!(second.data, (12..24).map(|i| i as f32).collect::<Vec<_>>());
    let msg = error_of(
        &path,
        &ReadOptions {
            volume: Some(2),
            ..Default::default()
        },
    );
    assert!(msg.contains("out of range"), "{msg}");
}

fn good_nii(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    write(&path, &ramp([6, 5, 4], 1.0, 1.0), OutDtype::Float32).unwrap();
    path
}

#[test]
fn truncated_gzip() {
    let dir = tmp();
    let path = dir.path().join("t.nii.gz");
    write(&path, &ramp([30, 30, 30], 1.0, 1.0), OutDtype::Float32).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = error_of(&path, &ReadOptions::default());
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn truncated_uncompressed() {
    let dir = tmp();
    let path = good_nii(dir.path(), "t.nii");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    assert!(error_of(&path, &ReadOptions::default()).contains("truncated"));
    std::fs::write(&path, &bytes[..100]).unwrap();
    assert!(error_of(&path, &ReadOptions::default()).contains("truncated"));
}

#[test]
fn wrong_magic() {
    let dir = tmp();
    let path = good_nii(dir.path(), "m.nii");
    patch(&path, 344, b"xyz\0");
    assert!(error_of(&path, &ReadOptions::default()).contains("not a NIfTI-1 file"));
}

#[test]
fn zero_and_absurd_dims() {
    let dir = tmp();
    let path = good_nii(dir.path(), "z.nii");
    patch(&path, 44, &0u16.to_le_bytes());
    assert!(error_of(&path, &ReadOptions::default()).contains("zero"));
    // 30000^3 voxels: refused from the header alone, before any allocation.
    let path = good_nii(dir.path(), "big.nii");
    for (i, off) in [42, 44, 46].into_iter().enumerate() {
        let _ = i;
        patch(&path, off, &30000u16.to_le_bytes());
    }
    assert!(error_of(&path, &ReadOptions::default()).contains("more than"));
    // Large but allowed dims on a small file: a truncation error, not a giant allocation.
    let path = good_nii(dir.path(), "short.nii");
    for off in [42, 44, 46] {
        patch(&path, off, &1000u16.to_le_bytes());
    }
    assert!(error_of(&path, &ReadOptions::default()).contains("truncated"));
}

#[test]
fn unsupported_datatype() {
    let dir = tmp();
    let path = good_nii(dir.path(), "c.nii");
    patch(&path, 70, &32i16.to_le_bytes()); // complex64
    patch(&path, 72, &64i16.to_le_bytes());
    assert!(error_of(&path, &ReadOptions::default()).contains("unsupported datatype"));
}

#[test]
fn non_finite_voxels() {
    let dir = tmp();
    let mut vol = ramp([4, 4, 4], 1.0, 1.0);
    vol.data[5] = f32::NAN;
    vol.data[9] = f32::INFINITY;
    let path = dir.path().join("nan.nii.gz");
    write(&path, &vol, OutDtype::Float32).unwrap();
    let msg = error_of(&path, &ReadOptions::default());
    assert!(
        msg.contains("2 voxels are NaN or infinite") && msg.contains("(1, 1, 0)"),
        "{msg}"
    );
}

#[test]
fn missing_and_empty_files() {
    let dir = tmp();
    let missing = dir.path().join("nope.nii.gz");
    assert!(matches!(
        read(&missing, &ReadOptions::default()),
        Err(DataError::Io { .. })
    ));
    let empty = dir.path().join("empty.nii");
    std::fs::write(&empty, b"").unwrap();
    assert!(error_of(&empty, &ReadOptions::default()).contains("empty"));
}

#[test]
fn write_failure_leaves_no_file() {
    let dir = tmp();
    let target = dir.path().join("no/such/dir/out.nii.gz");
    assert!(write(&target, &ramp([2, 2, 2], 1.0, 0.0), OutDtype::Float32).is_err());
    assert!(!target.exists());
}

/// The five real subjects: shapes, orientations and datatypes as the data set's README lists.
#[test]
fn real_data_set() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/brats-t1t2");
    if !root.is_dir() {
        println!("skipped: {} is absent", root.display());
        return;
    }
    let expected = [
        ("BraTS-GLI-00001-000", "LPS", [4, 4, 4, 4]),
        ("BraTS-MET-00110-000", "RAS", [4, 4, 4, 4]),
        ("BraTS20_Training_001-brainles", "LPS", [64, 64, 16, 64]),
        ("TCGA-DU-7294", "LPS", [4, 4, 4, 4]),
        ("TCGA-FG-6692", "LPS", [4, 4, 4, 4]),
    ];
    for (subject, orientation, datatypes) in expected {
        for (modality, datatype) in ["t1", "t2", "t1c", "flair"].into_iter().zip(datatypes) {
            let path = root.join(subject).join(format!("{modality}.nii.gz"));
            let vol = read(&path, &ReadOptions::default()).unwrap();
            assert_eq!(vol.dims, [240, 240, 155], "{subject}/{modality}");
            assert_eq!(vol.spacing(), [1.0, 1.0, 1.0]);
            assert_eq!(
                vol.stored_orientation(),
                orientation,
                "{subject}/{modality}"
            );
            assert_eq!(vol.meta.header.datatype, datatype, "{subject}/{modality}");
        }
    }
    // Spot values from the README: GLI t1 spans 0..2921.
    let gli = read(
        &root.join("BraTS-GLI-00001-000/t1.nii.gz"),
        &ReadOptions::default(),
    )
    .unwrap();
    let (lo, hi) = gli
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((lo, hi), (0.0, 2921.0));
}
