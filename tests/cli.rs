//! The binary end to end on the phantom: `phantom` -> `slice` -> `eval`, and bad input giving
//! a clear error and a non-zero exit, never a panic.

use std::path::Path;
use std::process::{Command, Output};

fn mrgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrgan"))
        .args(args)
        .output()
        .expect("run mrgan")
}

fn ok(args: &[&str]) -> String {
    let out = mrgan(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "mrgan {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout.into_owned()
}

/// Runs a command that must fail; returns its error output.
fn fails(args: &[&str]) -> String {
    let out = mrgan(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "mrgan {args:?} must exit 1; stderr: {stderr}"
    );
    assert!(
        stderr.starts_with("error:") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn phantom_slice_eval() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&[
        "phantom",
        "--out",
        s(&data),
        "--subjects",
        "2",
        "--size",
        "48,40,24",
        "--seed",
        "3",
    ]);
    for sub in ["phantom-000", "phantom-001"] {
        for f in ["t1", "t2", "flair", "pd", "labels"] {
            assert!(
                data.join(sub).join(format!("{f}.nii.gz")).is_file(),
                "{sub}/{f}"
            );
        }
    }

    let out = dir.path().join("png");
    let printed = ok(&[
        "slice",
        "--data",
        s(&data),
        "--a",
        "t1",
        "--b",
        "t2",
        "--out",
        s(&out),
        "--layout",
        "aligned",
        "--pad",
        "64",
        "--min-foreground",
        "100",
    ]);
    assert!(printed.contains("of 2 subjects"), "{printed}");
    let first = std::fs::read_dir(out.join("train"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&first).unwrap(),
    ));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!(
        (info.width, info.height),
        (128, 64),
        "A|B side by side, padded to 64"
    );

    ok(&[
        "slice",
        "--data",
        s(&data),
        "--a",
        "t1",
        "--b",
        "t2",
        "--out",
        s(&out),
        "--layout",
        "unaligned",
        "--pad",
        "0",
        "--sixteen-bit",
    ]);
    assert!(out.join("trainA").is_dir() && out.join("trainB").is_dir());

    // T1 scored against T2 (the identity baseline) and T2 against itself.
    let json = dir.path().join("scores.json");
    let table = ok(&[
        "eval",
        "--pred",
        s(&data),
        "--pred-name",
        "t2",
        "--real",
        s(&data),
        "--real-name",
        "t2",
        "--json",
        s(&json),
        "--csv",
        s(&dir.path().join("s.csv")),
    ]);
    assert!(
        table.contains("phantom-000") && table.contains("mean +- std (2 subjects)"),
        "{table}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["subjects"].as_array().unwrap().len(), 2);
    assert_eq!(doc["subjects"][0]["subject"], "phantom-000");
    assert_eq!(doc["mean"]["ssim"], 1.0);
    assert_eq!(doc["mean"]["mae"], 0.0);
    assert!(
        doc["mean"]["psnr"].is_null() || doc["mean"]["psnr"].as_f64().is_none(),
        "identical volumes: infinite PSNR"
    );

    let json2 = dir.path().join("t1t2.json");
    ok(&[
        "eval",
        "--pred",
        s(&data),
        "--pred-name",
        "t1",
        "--real",
        s(&data),
        "--real-name",
        "t2",
        "--json",
        s(&json2),
        "--mask",
        "nonzero",
    ]);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json2).unwrap()).unwrap();
    let ssim = doc["mean"]["ssim"].as_f64().unwrap();
    assert!(ssim > 0.0 && ssim < 1.0, "{ssim}");
    assert!(doc["subjects"][0]["ssim3d"].as_f64().is_some());
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let msg = fails(&["eval", "--pred", s(&empty), "--real", s(&empty)]);
    assert!(
        msg.contains("contains no NIfTI volumes") && msg.contains(s(&empty)),
        "{msg}"
    );

    let data = dir.path().join("data");
    ok(&["phantom", "--out", s(&data), "--size", "16,16,12"]);
    let t2 = data.join("phantom-000/t2.nii.gz");
    let bytes = std::fs::read(&t2).unwrap();
    std::fs::write(&t2, &bytes[..bytes.len() / 3]).unwrap();
    let msg = fails(&[
        "eval",
        "--pred",
        s(&data),
        "--pred-name",
        "t1",
        "--real",
        s(&data),
        "--real-name",
        "t2",
    ]);
    assert!(
        msg.contains("t2.nii.gz") && msg.contains("truncated"),
        "{msg}"
    );

    let msg = fails(&[
        "slice",
        "--data",
        s(&data),
        "--a",
        "t1",
        "--b",
        "nosuch",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(msg.contains("nosuch"), "{msg}");
    let msg = String::from_utf8_lossy(
        &mrgan(&[
            "phantom",
            "--out",
            s(&dir.path().join("p")),
            "--size",
            "4,4",
        ])
        .stderr,
    )
    .into_owned();
    assert!(msg.contains("X,Y,Z"), "{msg}");
}

/// Every kind of bad volume, fed to `mrgan eval` as the prediction: exit 1, an error that
/// names the file and the problem, no panic.
#[test]
fn every_bad_volume_through_the_binary() {
    use mrgan::data::nifti::{OutDtype, write};
    use mrgan::data::volume::Volume;

    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.nii");
    let dims = [12, 12, 10];
    let ramp = |dims: [usize; 3]| -> Volume {
        let n: usize = dims.iter().product();
        Volume::new_ras(
            dims,
            (0..n).map(|i| (i % 97) as f32 + 1.0).collect(),
            [1.0; 3],
            "t",
        )
    };
    write(&real, &ramp(dims), OutDtype::Float32).unwrap();
    let patched = |name: &str, offset: usize, bytes: &[u8]| {
        let path = dir.path().join(name);
        let mut data = std::fs::read(&real).unwrap();
        data[offset..offset + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&path, data).unwrap();
        path
    };
    let mut cases = vec![
        (patched("magic.nii", 344, b"abc\0"), "not a NIfTI-1 file"),
        (patched("zero.nii", 42, &0u16.to_le_bytes()), "zero"),
        (
            patched("huge.nii", 42, &[0x30, 0x75, 0x30, 0x75, 0x30, 0x75]),
            "more than",
        ),
        (
            patched("complex.nii", 70, &32i16.to_le_bytes()),
            "unsupported datatype",
        ),
    ];
    let mut nan = ramp(dims);
    nan.data[3] = f32::NAN;
    let nan_path = dir.path().join("nan.nii.gz");
    write(&nan_path, &nan, OutDtype::Float32).unwrap();
    cases.push((nan_path, "NaN or infinite"));
    let gz = dir.path().join("cut.nii.gz");
    write(&gz, &ramp([40, 40, 40]), OutDtype::Float32).unwrap();
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    cases.push((gz, "truncated"));
    let other_shape = dir.path().join("shape.nii");
    write(&other_shape, &ramp([12, 12, 9]), OutDtype::Float32).unwrap();
    cases.push((other_shape, "dims"));
    let mut moved = ramp(dims);
    moved.meta.header.srow_y[3] = 4.0;
    let other_affine = dir.path().join("affine.nii");
    write(&other_affine, &moved, OutDtype::Float32).unwrap();
    cases.push((other_affine, "different affines"));

    for (path, problem) in cases {
        let msg = fails(&["eval", "--pred", s(&path), "--real", s(&real)]);
        assert!(
            msg.contains(problem) && msg.contains(s(&path)),
            "{}: {msg}",
            path.display()
        );
    }
}

/// `bench train --model cyclegan` trains both generators and discriminators on the CPU and
/// reports its times; a Python that cannot run leaves the PyTorch side out with its reason,
/// and the run still succeeds.
#[test]
fn bench_train_times_a_cyclegan_iteration() {
    let out = ok(&[
        "bench",
        "train",
        "--model",
        "cyclegan",
        "--size",
        "32",
        "--iters",
        "1",
        "--device",
        "cpu",
        "--python",
        "/nonexistent/python3",
    ]);
    assert!(
        out.contains("CycleGAN 2 x resnet_9blocks + 2 x basic D, ngf/ndf 64, 32x32, batch 1"),
        "{out}"
    );
    let mrgan_row = out
        .lines()
        .find(|l| l.starts_with("mrgan "))
        .unwrap_or_else(|| panic!("no mrgan row in:\n{out}"));
    let seconds: Vec<f64> = mrgan_row
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().expect("a time in seconds"))
        .collect();
    assert!(
        seconds.len() == 2 && seconds.iter().all(|&t| t > 0.0),
        "{mrgan_row}"
    );
    assert!(
        out.contains("PyTorch side skipped: cannot run /nonexistent/python3"),
        "{out}"
    );
}

/// `bench volumetric --train` times a 3D CycleGAN step and, with a Python that cannot run,
/// says why the PyTorch side is left out.
#[test]
fn bench_volumetric_times_a_step_and_names_a_missing_pytorch() {
    let out = ok(&[
        "bench",
        "volumetric",
        "--ngf",
        "2",
        "--patch",
        "32,32,32",
        "--train",
        "--batch",
        "1",
        "--device",
        "cpu",
        "--python",
        "/nonexistent/python3",
    ]);
    let step = out
        .lines()
        .find(|l| l.starts_with("train: one CycleGAN step"))
        .unwrap_or_else(|| panic!("no train line in:\n{out}"));
    let seconds: f64 = step
        .rsplit(": ")
        .next()
        .and_then(|t| t.strip_suffix(" s"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time in {step:?}"));
    assert!(seconds > 0.0, "{step}");
    assert!(
        out.contains("train: PyTorch side skipped: cannot run /nonexistent/python3"),
        "{out}"
    );
}
