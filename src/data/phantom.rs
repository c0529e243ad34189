//! A synthetic head phantom: tissue classes laid out as perturbed ellipsoids, rendered into
//! T1-weighted, T2-weighted, FLAIR-like and PD-weighted contrasts with the spin-echo (and
//! inversion-recovery) signal equations, a smooth bias field and Rician noise. Deterministic
//! for a seed; any size. It is the built-in data for the demo and the tests.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Normal};

use super::volume::Volume;

/// Tissue classes, in label order (label = index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tissue {
    Air,
    Fat,
    Bone,
    Csf,
    GreyMatter,
    WhiteMatter,
    Lesion,
}

impl Tissue {
    pub const ALL: [Tissue; 7] = [
        Tissue::Air,
        Tissue::Fat,
        Tissue::Bone,
        Tissue::Csf,
        Tissue::GreyMatter,
        Tissue::WhiteMatter,
        Tissue::Lesion,
    ];

    /// (T1 ms, T2 ms, proton density) at about 1.5 T.
    pub fn relaxation(self) -> (f64, f64, f64) {
        match self {
            Tissue::Air => (1.0, 1.0, 0.0),
            Tissue::Fat => (260.0, 85.0, 0.9),
            Tissue::Bone => (300.0, 10.0, 0.05),
            Tissue::Csf => (3600.0, 1800.0, 1.0),
            Tissue::GreyMatter => (1100.0, 95.0, 0.82),
            Tissue::WhiteMatter => (650.0, 75.0, 0.7),
            Tissue::Lesion => (1400.0, 220.0, 0.88),
        }
    }

    /// Part of the brain (kept by skull stripping).
    pub fn is_brain(self) -> bool {
        matches!(
            self,
            Tissue::Csf | Tissue::GreyMatter | Tissue::WhiteMatter | Tissue::Lesion
        )
    }
}

/// Image contrasts the phantom renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contrast {
    /// Spin echo TR 500 ms, TE 15 ms.
    T1,
    /// Spin echo TR 4000 ms, TE 100 ms.
    T2,
    /// Inversion recovery TR 9000 ms, TI 2500 ms, TE 100 ms: fluid suppressed.
    Flair,
    /// Spin echo TR 4000 ms, TE 15 ms.
    Pd,
}

impl Contrast {
    pub const ALL: [Contrast; 4] = [Contrast::T1, Contrast::T2, Contrast::Flair, Contrast::Pd];

    /// File name stem, as in the real data set (`t1`, `t2`, `flair`, `pd`).
    pub fn name(self) -> &'static str {
        match self {
            Contrast::T1 => "t1",
            Contrast::T2 => "t2",
            Contrast::Flair => "flair",
            Contrast::Pd => "pd",
        }
    }

    /// Noise-free signal of a tissue, PD-scaled, in [0, 1].
    pub fn signal(self, tissue: Tissue) -> f64 {
        let (t1, t2, pd) = tissue.relaxation();
        let spin_echo = |tr: f64, te: f64| pd * (1.0 - (-tr / t1).exp()) * (-te / t2).exp();
        match self {
            Contrast::T1 => spin_echo(500.0, 15.0),
            Contrast::T2 => spin_echo(4000.0, 100.0),
            Contrast::Pd => spin_echo(4000.0, 15.0),
            Contrast::Flair => {
                let (tr, ti, te) = (9000.0, 2500.0, 100.0);
                pd * (1.0 - 2.0 * (-ti / t1).exp() + (-tr / t1).exp()).abs() * (-te / t2).exp()
            }
        }
    }
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhantomSpec {
    pub dims: [usize; 3],
    /// Voxel size in mm.
    pub spacing: [f32; 3],
    pub seed: u64,
    /// Noise standard deviation as a fraction of the brightest tissue's signal.
    pub noise: f64,
    /// Peak deviation of the multiplicative bias field from 1.
    pub bias: f64,
    /// Zero everything outside the brain, like the skull-stripped real data.
    pub skull_strip: bool,
}

impl Default for PhantomSpec {
    fn default() -> Self {
        PhantomSpec {
            dims: [96, 96, 64],
            spacing: [2.0, 2.0, 2.0],
            seed: 0,
            noise: 0.02,
            bias: 0.1,
            skull_strip: true,
        }
    }
}

/// Signal units per unit of normalised signal in the written volumes (int16-friendly).
pub const SIGNAL_SCALE: f64 = 1000.0;

/// A generated subject: tissue labels and one volume per contrast.
pub struct Phantom {
    pub labels: Vec<Tissue>,
    pub volumes: Vec<(Contrast, Volume)>,
}

impl Phantom {
    pub fn volume(&self, contrast: Contrast) -> &Volume {
        &self
            .volumes
            .iter()
            .find(|(c, _)| *c == contrast)
            .expect("every contrast is rendered")
            .1
    }
}

/// Lays out the tissues: head and brain as ellipsoids with a wavy cortex, CSF around the
/// brain and in two ventricles, a spherical lesion in the white matter.
fn tissue_map<R: Rng + ?Sized>(dims: [usize; 3], rng: &mut R) -> Vec<Tissue> {
    let jitter = |rng: &mut R, scale: f64| 1.0 + scale * (rng.random::<f64>() - 0.5);
    let head = [
        0.92 * jitter(rng, 0.06),
        0.95 * jitter(rng, 0.06),
        0.9 * jitter(rng, 0.06),
    ];
    let folds = (
        rng.random_range(5..9) as f64,
        rng.random_range(3..6) as f64,
        rng.random::<f64>() * std::f64::consts::TAU,
    );
    let lesion_center = [
        0.3 * (rng.random::<f64>() - 0.5),
        0.3 * (rng.random::<f64>() - 0.5),
        0.2 * rng.random::<f64>(),
    ];
    let lesion_radius = 0.08 + 0.08 * rng.random::<f64>();
    let mut labels = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                // Coordinates in [-1, 1] across each axis.
                let u = [x, y, z].map(|v| v as f64);
                let c = [0, 1, 2].map(|a| 2.0 * (u[a] + 0.5) / dims[a] as f64 - 1.0);
                let p = [c[0] / head[0], c[1] / head[1], c[2] / head[2]];
                let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
                let (theta, phi) = (p[1].atan2(p[0]), (p[2] / r.max(1e-9)).acos());
                let cortex =
                    0.78 + 0.035 * (folds.0 * theta + folds.2).sin() * (folds.1 * phi).cos();
                let ventricle = |dx: f64| {
                    let q = [(c[0] - dx) / 0.07, c[1] / 0.25, (c[2] - 0.05) / 0.18];
                    q[0] * q[0] + q[1] * q[1] + q[2] * q[2] < 1.0
                };
                let d = [0, 1, 2].map(|a| c[a] - lesion_center[a]);
                let in_lesion = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt() < lesion_radius;
                labels.push(if r >= 1.0 {
                    Tissue::Air
                } else if r >= 0.94 {
                    Tissue::Fat
                } else if r >= 0.88 {
                    Tissue::Bone
                } else if r >= cortex + 0.06 || ventricle(0.1) || ventricle(-0.1) {
                    Tissue::Csf
                } else if in_lesion {
                    Tissue::Lesion
                } else if r >= cortex - 0.07 {
                    Tissue::GreyMatter
                } else {
                    Tissue::WhiteMatter
                });
            }
        }
    }
    labels
}

/// Generates one subject.
pub fn generate(spec: &PhantomSpec) -> Phantom {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed);
    let labels = tissue_map(spec.dims, &mut rng);
    // Bias field: a smooth, low-order polynomial in the normalised coordinates.
    let coeff: [f64; 4] = std::array::from_fn(|_| rng.random::<f64>() - 0.5);
    let [nx, ny, nz] = spec.dims;
    let brightest = Tissue::ALL
        .iter()
        .flat_map(|&t| Contrast::ALL.map(|c| c.signal(t)))
        .fold(0.0, f64::max);
    let noise = Normal::new(0.0, spec.noise * brightest).expect("finite noise");
    let volumes = Contrast::ALL
        .iter()
        .map(|&contrast| {
            let data = labels
                .iter()
                .enumerate()
                .map(|(i, &tissue)| {
                    if spec.skull_strip && !tissue.is_brain() {
                        return 0.0;
                    }
                    let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
                    let c = [
                        x as f64 / nx as f64 - 0.5,
                        y as f64 / ny as f64 - 0.5,
                        z as f64 / nz as f64 - 0.5,
                    ];
                    let field = 1.0
                        + 2.0
                            * spec.bias
                            * (coeff[0] * c[0]
                                + coeff[1] * c[1]
                                + coeff[2] * c[2]
                                + coeff[3] * c[0] * c[1]);
                    let s = contrast.signal(tissue) * field;
                    // Rician magnitude noise.
                    let (re, im) = (s + noise.sample(&mut rng), noise.sample(&mut rng));
                    let v = ((re * re + im * im).sqrt() * SIGNAL_SCALE).round() as f32;
                    // Brain voxels stay non-zero so the foreground is exactly the brain.
                    if spec.skull_strip { v.max(1.0) } else { v }
                })
                .collect();
            let source = format!("phantom seed {} {}", spec.seed, contrast.name());
            (
                contrast,
                Volume::new_ras(spec.dims, data, spec.spacing, &source),
            )
        })
        .collect();
    Phantom { labels, volumes }
}

/// Writes a subject as `<dir>/{t1,t2,flair,pd}.nii.gz` (int16) and `labels.nii.gz` (uint8,
/// the `Tissue` index).
pub fn write(phantom: &Phantom, dir: &std::path::Path) -> super::DataResult<()> {
    use super::nifti::{OutDtype, write};
    std::fs::create_dir_all(dir).map_err(|e| super::DataError::io(dir, e))?;
    for (contrast, vol) in &phantom.volumes {
        write(
            &dir.join(format!("{}.nii.gz", contrast.name())),
            vol,
            OutDtype::Int16,
        )?;
    }
    let first = &phantom.volumes[0].1;
    let labels = phantom
        .labels
        .iter()
        .map(|&t| Tissue::ALL.iter().position(|&x| x == t).unwrap_or(0) as f32)
        .collect();
    write(
        &dir.join("labels.nii.gz"),
        &first.with_data(labels),
        OutDtype::Uint8,
    )
}
