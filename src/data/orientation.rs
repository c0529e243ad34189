//! Voxel-axis orientation from the affine, and the flips/permutation that bring a volume to
//! the canonical RAS+ orientation (nibabel's `as_closest_canonical`) and back.

/// The NIfTI affine: voxel (i, j, k, 1) -> world millimetres (RAS+), row-major 3x4.
pub type Affine = [[f64; 4]; 3];

/// How processing axes relate to stored axes: processing axis `a` is stored axis `perm[a]`,
/// reversed when `flip[a]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reorientation {
    pub perm: [usize; 3],
    pub flip: [bool; 3],
}

impl Reorientation {
    /// Voxels kept as stored.
    pub const IDENTITY: Reorientation = Reorientation {
        perm: [0, 1, 2],
        flip: [false; 3],
    };

    /// The reorientation to RAS+ for `affine`: each voxel axis is assigned the world axis its
    /// column points along most, and reversed when it points to L, P or I. None when two voxel
    /// axes point along the same world axis (a degenerate affine).
    pub fn to_canonical(affine: &Affine) -> Option<Reorientation> {
        let mut perm = [usize::MAX; 3];
        let mut flip = [false; 3];
        for (j, column) in (0..3).map(|j| (j, [affine[0][j], affine[1][j], affine[2][j]])) {
            let world = (0..3).max_by(|&a, &b| column[a].abs().total_cmp(&column[b].abs()))?;
            if perm[world] != usize::MAX || column[world] == 0.0 {
                return None;
            }
            perm[world] = j;
            flip[world] = column[world] < 0.0;
        }
        Some(Reorientation { perm, flip })
    }

    /// Axis codes of a stored volume, e.g. "LPS" (nibabel's `aff2axcodes`).
    pub fn axis_codes(affine: &Affine) -> Option<String> {
        let r = Self::to_canonical(affine)?;
        let mut codes = ['?'; 3];
        for world in 0..3 {
            let names = [['R', 'L'], ['A', 'P'], ['S', 'I']][world];
            codes[r.perm[world]] = names[r.flip[world] as usize];
        }
        Some(codes.iter().collect())
    }

    /// Dims of the processing volume for stored dims.
    pub fn apply_dims(&self, stored: [usize; 3]) -> [usize; 3] {
        self.perm.map(|a| stored[a])
    }

    /// Reorders F-ordered (first axis fastest) stored voxels into processing order.
    pub fn apply(&self, stored: &[f32], stored_dims: [usize; 3]) -> Vec<f32> {
        let dims = self.apply_dims(stored_dims);
        let mut out = vec![0.0; stored.len()];
        self.for_each_pair(stored_dims, |p, s| out[p] = stored[s]);
        debug_assert_eq!(out.len(), dims.iter().product::<usize>());
        out
    }

    /// The inverse of [`Self::apply`]: processing order back to stored order.
    pub fn undo(&self, processed: &[f32], stored_dims: [usize; 3]) -> Vec<f32> {
        let mut out = vec![0.0; processed.len()];
        self.for_each_pair(stored_dims, |p, s| out[s] = processed[p]);
        out
    }

    /// Calls `f(processing_index, stored_index)` for every voxel.
    fn for_each_pair(&self, stored_dims: [usize; 3], mut f: impl FnMut(usize, usize)) {
        let dims = self.apply_dims(stored_dims);
        let stored_stride = [1, stored_dims[0], stored_dims[0] * stored_dims[1]];
        // Per processing axis: stride and start in the stored array.
        let mut step = [0isize; 3];
        let mut start = 0isize;
        for a in 0..3 {
            let s = stored_stride[self.perm[a]] as isize;
            if self.flip[a] {
                start += s * (dims[a] as isize - 1);
                step[a] = -s;
            } else {
                step[a] = s;
            }
        }
        let mut p = 0;
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                let row = start + step[2] * z as isize + step[1] * y as isize;
                for x in 0..dims[0] {
                    f(p, (row + step[0] * x as isize) as usize);
                    p += 1;
                }
            }
        }
    }
}
