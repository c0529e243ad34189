//! Development aid: middle axial slice of each contrast of a subject folder, side by side.
use mrgan::data::{nifti, normalize::*, png, slices};
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let out = std::env::args().nth(2).unwrap();
    let mut imgs = vec![];
    for c in ["t1", "t2", "flair", "pd"] {
        let Ok(v) = nifti::read(&dir.join(format!("{c}.nii.gz")), &Default::default()) else {
            continue;
        };
        let n = Normalizer::fit(&v, NormMethod::default()).unwrap();
        let d = n.apply(&v.data);
        imgs.push(slices::slice(&d, v.dims, 2, v.dims[2] / 2));
    }
    let refs: Vec<&slices::Image> = imgs.iter().collect();
    png::write(
        std::path::Path::new(&out),
        &png::side_by_side(&refs),
        -1.0,
        1.0,
        png::BitDepth::Eight,
    )
    .unwrap();
}
