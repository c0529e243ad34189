//! Time to read, normalise and slice one volume: the data pipeline's per-subject cost.

use std::path::Path;
use std::time::Instant;

use crate::data::DataResult;
use crate::data::nifti::{ReadOptions, read};
use crate::data::normalize::{NormMethod, Normalizer};
use crate::data::slices::{self, PadTarget};

/// Seconds spent in each stage for one volume.
#[derive(Clone, Copy, Debug)]
pub struct StageTimes {
    pub read: f64,
    pub normalize: f64,
    pub slice: f64,
}

impl StageTimes {
    pub fn total(&self) -> f64 {
        self.read + self.normalize + self.slice
    }
}

/// Reads `path` (canonical orientation), fits and applies the default normalisation, and cuts
/// every axial slice padded to 256 x 256; returns the time of each stage.
pub fn run_once(path: &Path) -> DataResult<StageTimes> {
    let t = Instant::now();
    let vol = read(path, &ReadOptions::default())?;
    let read_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let norm = Normalizer::fit(&vol, NormMethod::default())?;
    let data = norm.apply(&vol.data);
    let normalize_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for k in 0..vol.dims[2] {
        let img = slices::slice(&data, vol.dims, 2, k);
        std::hint::black_box(slices::pad(
            &img,
            PadTarget::Exact(256, 256),
            norm.background(),
        )?);
    }
    Ok(StageTimes {
        read: read_s,
        normalize: normalize_s,
        slice: t.elapsed().as_secs_f64(),
    })
}

/// Median stage times over `reps` runs (after one warm-up).
pub fn run(path: &Path, reps: usize) -> DataResult<StageTimes> {
    run_once(path)?;
    let mut runs: Vec<StageTimes> = (0..reps.max(1))
        .map(|_| run_once(path))
        .collect::<DataResult<_>>()?;
    runs.sort_by(|a, b| a.total().total_cmp(&b.total()));
    Ok(runs[runs.len() / 2])
}

/// A 240 x 240 x 155 int16 phantom `.nii.gz`, the size of one BraTS volume, in a temporary
/// folder (kept alive by the returned guard).
pub fn brats_sized_phantom() -> DataResult<(tempfile::TempDir, std::path::PathBuf)> {
    use crate::data::DataError;
    use crate::data::phantom::{Contrast, PhantomSpec, generate};
    let dir = tempfile::tempdir().map_err(|e| DataError::io(&std::env::temp_dir(), e))?;
    let spec = PhantomSpec {
        dims: [240, 240, 155],
        spacing: [1.0; 3],
        ..PhantomSpec::default()
    };
    let path = dir.path().join("t1.nii.gz");
    crate::data::nifti::write(
        &path,
        generate(&spec).volume(Contrast::T1),
        crate::data::nifti::OutDtype::Int16,
    )?;
    Ok((dir, path))
}
