//! `Volume`: a 3D scalar image in processing orientation, with what is needed to write it
//! back exactly as it came.

use std::path::PathBuf;

use nifti::NiftiHeader;

use super::orientation::{Affine, Reorientation};

/// Where a volume came from and how to put it back.
#[derive(Clone, Debug)]
pub struct VolumeMeta {
    /// The file it was read from (or a description for generated volumes).
    pub source: PathBuf,
    /// The header as read: affine, qform/sform codes, pixdim, units and datatype survive a
    /// round trip through it.
    pub header: NiftiHeader,
    /// Dims as stored on disk.
    pub stored_dims: [usize; 3],
    /// Stored -> processing axes.
    pub reorientation: Reorientation,
}

/// A scalar volume, first axis fastest (NIfTI order), in processing orientation: RAS+ after a
/// canonical read, as stored otherwise.
#[derive(Clone, Debug)]
pub struct Volume {
    pub dims: [usize; 3],
    pub data: Vec<f32>,
    pub meta: VolumeMeta,
}

impl Volume {
    /// Linear index of voxel (x, y, z).
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.dims[0] * (y + self.dims[1] * z)
    }

    pub fn get(&self, x: usize, y: usize, z: usize) -> f32 {
        self.data[self.index(x, y, z)]
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same geometry and header with other voxel values.
    pub fn with_data(&self, data: Vec<f32>) -> Volume {
        assert_eq!(data.len(), self.data.len(), "with_data: voxel count");
        Volume {
            dims: self.dims,
            data,
            meta: self.meta.clone(),
        }
    }

    /// Voxels that are not exactly zero: the brain in skull-stripped data.
    pub fn foreground(&self) -> Vec<bool> {
        self.data.iter().map(|&v| v != 0.0).collect()
    }

    /// Voxel size in millimetres along the processing axes.
    pub fn spacing(&self) -> [f32; 3] {
        let p = self.meta.header.pixdim;
        self.meta.reorientation.perm.map(|a| p[a + 1].abs())
    }

    /// The stored affine (sform, else qform, else pixdim scaling).
    pub fn stored_affine(&self) -> Affine {
        super::nifti::affine(&self.meta.header)
    }

    /// Axis codes of the file as stored, e.g. "LPS".
    pub fn stored_orientation(&self) -> String {
        Reorientation::axis_codes(&self.stored_affine()).unwrap_or_else(|| "oblique".into())
    }

    /// The voxels in the file's own axis order (first axis fastest).
    pub fn stored_data(&self) -> Vec<f32> {
        self.meta
            .reorientation
            .undo(&self.data, self.meta.stored_dims)
    }
}

impl Volume {
    /// A new volume in RAS+ orientation with voxel size `spacing` (mm), origin at voxel 0:
    /// sform and qform both set (code 1, scanner), units mm, float32 on disk.
    pub fn new_ras(dims: [usize; 3], data: Vec<f32>, spacing: [f32; 3], source: &str) -> Volume {
        assert_eq!(
            data.len(),
            dims.iter().product::<usize>(),
            "new_ras: voxel count"
        );
        let mut header = NiftiHeader {
            dim: [
                3,
                dims[0] as u16,
                dims[1] as u16,
                dims[2] as u16,
                1,
                1,
                1,
                1,
            ],
            pixdim: [1.0, spacing[0], spacing[1], spacing[2], 1.0, 1.0, 1.0, 1.0],
            datatype: nifti::NiftiType::Float32 as i16,
            bitpix: 32,
            qform_code: 1,
            sform_code: 1,
            srow_x: [spacing[0], 0.0, 0.0, 0.0],
            srow_y: [0.0, spacing[1], 0.0, 0.0],
            srow_z: [0.0, 0.0, spacing[2], 0.0],
            xyzt_units: 2 | 8, // millimetres, seconds
            ..NiftiHeader::default()
        };
        header.scl_slope = 1.0;
        Volume {
            dims,
            data,
            meta: VolumeMeta {
                source: PathBuf::from(source),
                header,
                stored_dims: dims,
                reorientation: Reorientation::IDENTITY,
            },
        }
    }
}
