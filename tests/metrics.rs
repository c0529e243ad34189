//! PSNR / SSIM against scikit-image: the reference notes' golden values (float64,
//! scikit-image 0.25.2) and fixtures from `scripts/gen_metric_fixtures.py`. Tolerance 1e-6
//! absolute (the bar); both sides compute in float64, so agreement is ~1e-15.

mod common;

use common::Fixtures;
use mrgan::metrics::{SsimOptions, Window, mae, nmse, psnr, ssim};

fn golden_pair(dims: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let n: usize = dims.iter().product();
    let (mut x, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (mut rest, mut sum) = (i, 0usize);
        for &d in dims {
            sum += rest % d;
            rest /= d;
        }
        x.push(0.5 + 0.5 * (0.37 * sum as f64).sin());
        y.push(0.5 + 0.5 * (0.41 * sum as f64).sin());
    }
    (x, y)
}

fn close(what: &str, got: f64, want: f64) {
    println!("{what}: {got:.12} (scikit-image {want:.12})");
    assert!((got - want).abs() <= 1e-6, "{what}: {got} vs {want}");
}

#[test]
fn golden_values_from_the_reference_notes() {
    // shape, box7 R=1, box7 R=1 pop-cov, Gaussian R=1, Gaussian pop-cov, box7 R=2, PSNR R=1
    let table: [(&[usize], [f64; 6]); 2] = [
        (
            &[16, 16],
            [
                0.768653322621,
                0.768675626641,
                0.730020841304,
                0.730034590194,
                0.771841957779,
                12.982203870656,
            ],
        ),
        (
            &[12, 13, 14],
            [
                0.720890224182,
                0.720893471529,
                0.692037760662,
                0.692039070576,
                0.724190215064,
                11.630661648769,
            ],
        ),
    ];
    for (dims, want) in table {
        let (x, y) = golden_pair(dims);
        let opts = SsimOptions::new(1.0);
        let pop = SsimOptions {
            sample_covariance: false,
            ..opts
        };
        let gauss = SsimOptions {
            window: Window::Gaussian(1.5),
            ..opts
        };
        let wang = SsimOptions {
            sample_covariance: false,
            ..gauss
        };
        let r2 = SsimOptions::new(2.0);
        close(
            &format!("{dims:?} box7"),
            ssim(&x, &y, dims, &opts).unwrap(),
            want[0],
        );
        close(
            &format!("{dims:?} box7 pop"),
            ssim(&x, &y, dims, &pop).unwrap(),
            want[1],
        );
        close(
            &format!("{dims:?} gauss"),
            ssim(&x, &y, dims, &gauss).unwrap(),
            want[2],
        );
        close(
            &format!("{dims:?} gauss pop"),
            ssim(&x, &y, dims, &wang).unwrap(),
            want[3],
        );
        close(
            &format!("{dims:?} box7 R=2"),
            ssim(&x, &y, dims, &r2).unwrap(),
            want[4],
        );
        close(&format!("{dims:?} psnr"), psnr(&x, &y, 1.0, None), want[5]);
    }
}

#[test]
fn scikit_image_fixtures() {
    let f = Fixtures::load("metrics.safetensors");
    println!("fixtures made with {}", f.torch_version);
    for c in &f.cases {
        let name = c["name"].as_str().unwrap();
        let dims: Vec<usize> = f
            .shape(&format!("{name}.x"))
            .iter()
            .rev()
            .copied()
            .collect();
        let (x, y) = (f.f64(&format!("{name}.x")), f.f64(&format!("{name}.y")));
        let range = c["data_range"].as_f64().unwrap();
        let window = match c["window"].as_str().unwrap() {
            "uniform" => Window::Uniform(c["win_size"].as_u64().unwrap() as usize),
            _ => Window::Gaussian(1.5),
        };
        let opts = SsimOptions {
            window,
            sample_covariance: c["sample_covariance"] == true,
            ..SsimOptions::new(range)
        };
        close(
            &format!("{name} ssim"),
            ssim(x, y, &dims, &opts).unwrap(),
            f.f64(&format!("{name}.ssim"))[0],
        );
        close(
            &format!("{name} psnr"),
            psnr(x, y, range, None),
            f.f64(&format!("{name}.psnr"))[0],
        );
    }
}

#[test]
fn identical_and_constant_inputs() {
    let (x, _) = golden_pair(&[9, 8]);
    assert_eq!(psnr(&x, &x, 1.0, None), f64::INFINITY);
    assert!((ssim(&x, &x, &[9, 8], &SsimOptions::new(1.0)).unwrap() - 1.0).abs() < 1e-12);
    let c = vec![0.25; 72];
    assert_eq!(ssim(&c, &c, &[9, 8], &SsimOptions::new(1.0)).unwrap(), 1.0);
    assert_eq!(mae(&x, &x, None), 0.0);
    assert_eq!(nmse(&x, &x, None), 0.0);
}

#[test]
fn masks_restrict_psnr_mae_nmse() {
    let real = [1.0, 2.0, 3.0, 4.0];
    let pred = [1.0, 2.0, 0.0, 0.0];
    let mask = [true, true, false, false];
    assert_eq!(mae(&pred, &real, Some(&mask)), 0.0);
    assert_eq!(mae(&pred, &real, None), 7.0 / 4.0);
    assert_eq!(nmse(&pred, &real, None), 25.0 / 30.0);
    assert!((psnr(&real, &pred, 4.0, None) - 10.0 * (16.0f64 / 6.25).log10()).abs() < 1e-12);
}

#[test]
fn bad_sizes_are_errors() {
    let x = vec![0.0; 25];
    let err = ssim(&x, &x, &[5, 5], &SsimOptions::new(1.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds image extent"), "{err}");
    assert!(ssim(&x, &x[..24], &[5, 5], &SsimOptions::new(1.0)).is_err());
}
