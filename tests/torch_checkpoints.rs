//! Reference `.pth` checkpoints: outputs equal PyTorch's (fixtures from
//! `scripts/gen_pth_fixtures.py`), architecture detection, conversion both ways, `info`, and
//! a clear error, never a panic, for every kind of hostile or broken file.
//!
//! Output tolerance: 1e-5 max absolute difference (the bar); both sides run the same
//! f32 network, differing only in summation order.

use std::io::Write;
use std::path::{Path, PathBuf};

mod common;
use common::mrgan_status as mrgan;

use mrgan::checkpoint::torch_pth::{self, read_bytes};
use mrgan::data::nifti::{OrientationMode, ReadOptions, read};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth")
}

fn raw(path: &Path) -> Vec<f32> {
    read(
        path,
        &ReadOptions {
            orientation: OrientationMode::AsStored,
            ..Default::default()
        },
    )
    .unwrap()
    .data
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn pix2pix_pth_outputs_match_pytorch_in_both_norm_modes() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    for file in ["p2p_latest_net_G.pth", "p2p_legacy_net_G.pth"] {
        for (stats, expected) in [
            ("batch", "unet_out_batch.nii.gz"),
            ("running", "unet_out_running.nii.gz"),
        ] {
            let out = dir.path().join(format!("{file}-{stats}"));
            let (ok, log) = mrgan(&[
                "predict",
                "--checkpoint",
                s(&f.join(file)),
                "--input",
                s(&f.join("unet_input.nii.gz")),
                "--output",
                s(&out),
                "--intensity",
                "none",
                "--norm-stats",
                stats,
            ]);
            assert!(ok, "{log}");
            let d = max_diff(
                &raw(&out.join("unet_input.nii.gz")),
                &raw(&f.join(expected)),
            );
            println!("{file} {stats}: max abs difference {d:.2e}");
            assert!(d <= 1e-5, "{file} {stats}: {d}");
        }
    }
}

#[test]
fn cyclegan_folder_predicts_both_directions() {
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    for (direction, expected) in [
        ("AtoB", "resnet_AtoB.nii.gz"),
        ("BtoA", "resnet_BtoA.nii.gz"),
    ] {
        let out = dir.path().join(direction);
        let (ok, log) = mrgan(&[
            "predict",
            "--checkpoint",
            s(&f.join("cyclegan")),
            "--direction",
            direction,
            "--input",
            s(&f.join("resnet_input.nii.gz")),
            "--output",
            s(&out),
            "--intensity",
            "none",
        ]);
        assert!(ok, "{log}");
        let d = max_diff(
            &raw(&out.join("resnet_input.nii.gz")),
            &raw(&f.join(expected)),
        );
        println!("{direction}: max abs difference {d:.2e}");
        assert!(d <= 1e-5, "{direction}: {d}");
    }
}

#[test]
fn detection_info_and_conversion() {
    let f = fixtures();
    let (ok, log) = mrgan(&["info", s(&f.join("p2p_latest_net_G.pth"))]);
    assert!(
        ok && log.contains("generator unet_256 ngf 4 norm Batch")
            && log.contains("channels 1 -> 1"),
        "{log}"
    );
    let (ok, log) = mrgan(&["info", s(&f.join("cyclegan/latest_net_G_B.pth"))]);
    assert!(
        ok && log.contains("generator resnet_9blocks ngf 4 norm Instance dropout false"),
        "{log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("g.safetensors");
    let back = dir.path().join("g.pth");
    assert!(mrgan(&["convert", s(&f.join("p2p_legacy_net_G.pth")), s(&st)]).0);
    assert!(mrgan(&["convert", s(&st), s(&back)]).0);
    let (a, b) = (
        torch_pth::read(&f.join("p2p_latest_net_G.pth")).unwrap(),
        torch_pth::read(&back).unwrap(),
    );
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, t) in &a.tensors {
        let u = b
            .get(name)
            .unwrap_or_else(|| panic!("{name} lost in conversion"));
        assert_eq!(u.shape, t.shape, "{name}");
        if !name.ends_with("num_batches_tracked") {
            assert_eq!(u.data, t.data, "{name}");
        }
    }
    // A wrong explicit architecture names the first key that does not fit.
    let (ok, log) = mrgan(&[
        "predict",
        "--checkpoint",
        s(&f.join("p2p_latest_net_G.pth")),
        "--net-g",
        "resnet_9blocks",
        "--input",
        s(&f.join("unet_input.nii.gz")),
        "--output",
        s(&dir.path().join("x")),
    ]);
    assert!(
        !ok && log.contains("the checkpoint has no model.1.weight"),
        "{log}"
    );
}

/// A `.pth` zip holding `pickle` as data.pkl plus `records`.
fn zip_pth(pickle: &[u8], records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opts).unwrap();
        z.write_all(pickle).unwrap();
        for (name, data) in records {
            z.start_file(format!("archive/{name}"), opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// The pickle of `{'w': tensor}` with the given storage size, tensor size and stride.
fn tensor_pickle(numel: u8, size: u8, stride: u8) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK".to_vec();
    p.push(numel);
    p.extend(b"tQK\x00K");
    p.push(size);
    p.extend(b"\x85K");
    p.push(stride);
    p.extend(b"\x85\x89ccollections\nOrderedDict\n)RtRu.");
    p
}

fn refused(bytes: &[u8], needle: &str) {
    let err = read_bytes(bytes, Path::new("hostile.pth"))
        .expect_err("must be refused")
        .to_string();
    assert!(
        err.contains("hostile.pth") && err.contains(needle),
        "expected {needle:?} in: {err}"
    );
}

#[test]
fn hostile_and_broken_files_are_refused() {
    let storage = [0u8; 16];
    // The well-formed baseline loads.
    let good = zip_pth(&tensor_pickle(4, 4, 1), &[("data/0", &storage)]);
    assert_eq!(
        read_bytes(&good, Path::new("ok.pth")).unwrap().tensors[0]
            .1
            .shape,
        vec![4]
    );

    refused(
        &zip_pth(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.", &[]),
        "refusing global os.system",
    );
    refused(
        &zip_pth(b"\x80\x02cbuiltins\neval\n.", &[]),
        "refusing global builtins.eval",
    );
    refused(
        &zip_pth(b"\x80\x02ctorch\nFloatStorage\n)R.", &[]),
        "refusing to call",
    );
    refused(
        &zip_pth(b"\x80\x02X\x01\x00\x00\x00a)R.", &[]),
        "REDUCE on anything but an allowed global",
    );
    refused(
        &zip_pth(&tensor_pickle(4, 100, 1), &[("data/0", &storage)]),
        "reach past its storage",
    );
    refused(
        &zip_pth(&tensor_pickle(4, 3, 2), &[("data/0", &storage)]),
        "reach past its storage",
    );
    refused(
        &zip_pth(&tensor_pickle(64, 4, 1), &[("data/0", &storage)]),
        "announces 64 elements",
    );
    let pickle = tensor_pickle(4, 4, 1);
    refused(
        &zip_pth(&pickle[..pickle.len() / 2], &[("data/0", &storage)]),
        "truncated pickle",
    );
    refused(
        &zip_pth(&tensor_pickle(4, 4, 1), &[]),
        "has no record archive/data/0",
    );
    refused(
        b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50",
        "truncated pickle",
    );
    refused(b"garbage", "neither a zip nor a legacy");

    // A zip entry escaping the archive.
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/../../etc/evil", opts).unwrap();
        z.write_all(b"x").unwrap();
        z.finish().unwrap();
    }
    refused(&buf.into_inner(), "escapes the archive");

    // Truncations of a real checkpoint, at many points: an error every time, never a panic.
    let real = std::fs::read(fixtures().join("p2p_latest_net_G.pth")).unwrap();
    let legacy = std::fs::read(fixtures().join("p2p_legacy_net_G.pth")).unwrap();
    for file in [&real, &legacy] {
        for cut in (1..20).map(|i| file.len() * i / 20) {
            assert!(
                read_bytes(&file[..cut], Path::new("cut.pth")).is_err(),
                "cut at {cut}"
            );
        }
    }
}

/// One tensor `'<prefix>w'` over storage `typ` at `location`, rebuilt by `rebuild`
/// (`_rebuild_tensor_v2` with 6 arguments or the old `_rebuild_tensor` with 4).
fn crafted(prefix: &str, typ: &str, location: &str, rebuild: &str) -> Vec<u8> {
    let s = |x: &str| {
        let mut v = vec![b'X'];
        v.extend((x.len() as u32).to_le_bytes());
        v.extend(x.as_bytes());
        v
    };
    let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(".to_vec();
    p.extend(s(&format!("{prefix}w")));
    p.extend(format!("ctorch._utils\n{rebuild}\n((").as_bytes());
    p.extend(s("storage"));
    p.extend(format!("ctorch\n{typ}\n").as_bytes());
    p.extend(s("0"));
    p.extend(s(location));
    p.extend(b"K\x04tQK\x00K\x02K\x02\x86K\x01K\x02\x86"); // offset 0, size (2, 2), stride (1, 2): a transposed view
    if rebuild == "_rebuild_tensor_v2" {
        p.extend(b"\x89ccollections\nOrderedDict\n)R");
    }
    p.extend(b"tRu.");
    p
}

#[test]
fn storage_types_locations_prefixes_and_old_rebuilds() {
    let cases: [(&str, Vec<u8>); 5] = [
        (
            "FloatStorage",
            [1.0f32, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "DoubleStorage",
            [1.0f64, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "HalfStorage",
            [1.0f32, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        (
            "BFloat16Storage",
            [1.0f32, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        (
            "LongStorage",
            [1i64, 2, 3, 4]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
    ];
    for (typ, data) in cases {
        for (prefix, location, rebuild) in [
            ("", "cpu", "_rebuild_tensor_v2"),
            ("module.", "cuda:0", "_rebuild_tensor"),
            ("_orig_mod.module.", "cuda:1", "_rebuild_tensor_v2"),
        ] {
            let file = zip_pth(
                &crafted(prefix, typ, location, rebuild),
                &[("data/0", &data)],
            );
            let sd = read_bytes(&file, Path::new("crafted.pth"))
                .unwrap_or_else(|e| panic!("{typ} {location} {rebuild}: {e}"));
            let (name, t) = &sd.tensors[0];
            assert_eq!(torch_pth::strip_prefixes(name), "w");
            assert_eq!(t.shape, vec![2, 2]);
            // Stride (1, 2) over [1, 2, 3, 4]: rows are [1, 3] and [2, 4].
            assert_eq!(
                t.data,
                vec![1.0, 3.0, 2.0, 4.0],
                "{typ} {location} {rebuild}"
            );
        }
    }
}
