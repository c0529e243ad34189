//! Trilinear resampling of volumes between voxel grids (voxel centres aligned: output voxel
//! `i` samples input coordinate `(i + 0.5) * in / out - 0.5`, clamped at the edges), for
//! training and predicting at a chosen voxel size and going back to the input's grid.

/// Resamples `data` (first axis fastest, `dims`) to `out_dims`.
pub fn resample(data: &[f32], dims: [usize; 3], out_dims: [usize; 3]) -> Vec<f32> {
    // Per axis and output index: the two input indices and the weight of the second.
    let taps: [Vec<(usize, usize, f32)>; 3] = std::array::from_fn(|a| {
        let scale = dims[a] as f64 / out_dims[a] as f64;
        (0..out_dims[a])
            .map(|o| {
                let c = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (dims[a] - 1) as f64);
                let i0 = c.floor() as usize;
                let i1 = (i0 + 1).min(dims[a] - 1);
                (i0, i1, (c - i0 as f64) as f32)
            })
            .collect()
    });
    let at = |x: usize, y: usize, z: usize| data[x + dims[0] * (y + dims[1] * z)];
    let mut out = Vec::with_capacity(out_dims.iter().product());
    for &(z0, z1, wz) in &taps[2] {
        for &(y0, y1, wy) in &taps[1] {
            for &(x0, x1, wx) in &taps[0] {
                let lerp = |a: f32, b: f32, w: f32| a + (b - a) * w;
                let plane = |z| {
                    lerp(
                        lerp(at(x0, y0, z), at(x1, y0, z), wx),
                        lerp(at(x0, y1, z), at(x1, y1, z), wx),
                        wy,
                    )
                };
                out.push(lerp(plane(z0), plane(z1), wz));
            }
        }
    }
    out
}

/// The grid size for voxel size `to` of a volume with `dims` at voxel size `from`:
/// `ceil(dims * from / to)`, as the 3D reference resamples.
pub fn dims_for_spacing(dims: [usize; 3], from: [f32; 3], to: [f32; 3]) -> [usize; 3] {
    std::array::from_fn(|a| {
        ((dims[a] as f64 * from[a] as f64 / to[a] as f64).ceil() as usize).max(1)
    })
}
