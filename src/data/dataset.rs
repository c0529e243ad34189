//! Datasets: paired subjects (two modalities on one grid) and unpaired sets, slices ready
//! for a network (normalised, padded), subject-list splits, and seeded shuffling / batching.

use std::path::{Path, PathBuf};

use rand::Rng;
use rand::seq::SliceRandom;

use super::discover::{Entry, pair, read_subject_list, volumes};
use super::error::{DataError, DataResult};
use super::nifti::{ReadOptions, read};
use super::normalize::{NormMethod, Normalizer};
use super::slices::{self, Image, PadTarget};
use super::volume::Volume;
use crate::tensor::Tensor;

/// One subject's files for modalities A and B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectFiles {
    pub subject: String,
    pub a: PathBuf,
    pub b: PathBuf,
}

/// Keeps the entries whose key is listed, in list order; a listed subject that is missing
/// is an error.
fn select(entries: Vec<Entry>, subjects: Option<&[String]>, root: &Path) -> DataResult<Vec<Entry>> {
    let Some(list) = subjects else {
        return Ok(entries);
    };
    list.iter()
        .map(|s| {
            entries
                .iter()
                .find(|e| &e.key == s)
                .cloned()
                .ok_or_else(|| {
                    DataError::invalid(
                        root,
                        format!("has no subject {s:?} (named in the subject list)"),
                    )
                })
        })
        .collect()
}

/// Subjects under `root` that hold both modality `a` and `b` (see `discover` for the
/// layouts), restricted to `subjects` when given. A subject with only one of them is an error.
pub fn paired_subjects(
    root: &Path,
    a: &str,
    b: &str,
    subjects: Option<&[String]>,
) -> DataResult<Vec<SubjectFiles>> {
    let pairs = pair(
        volumes(root, Some(a))?,
        volumes(root, Some(b))?,
        subjects.is_some(),
    )?;
    let (a_entries, b_entries): (Vec<Entry>, Vec<Entry>) = pairs.into_iter().unzip();
    let a_sel = select(a_entries, subjects, root)?;
    let b_sel = select(b_entries, subjects, root)?;
    Ok(a_sel
        .into_iter()
        .zip(b_sel)
        .map(|(x, y)| SubjectFiles {
            subject: x.key,
            a: x.path,
            b: y.path,
        })
        .collect())
}

/// Volumes as (subject, path).
pub type VolumeList = Vec<(String, PathBuf)>;

/// Two independent sets for unpaired training (CycleGAN): the volumes of modality `a` under
/// `root_a` and of `b` under `root_b`, each as (subject, path), optionally restricted to lists.
pub fn unpaired_sets(
    (root_a, a, list_a): (&Path, &str, Option<&[String]>),
    (root_b, b, list_b): (&Path, &str, Option<&[String]>),
) -> DataResult<(VolumeList, VolumeList)> {
    let side =
        |root: &Path, name: &str, list: Option<&[String]>| -> DataResult<Vec<(String, PathBuf)>> {
            Ok(select(volumes(root, Some(name))?, list, root)?
                .into_iter()
                .map(|e| (e.key, e.path))
                .collect())
        };
    Ok((side(root_a, a, list_a)?, side(root_b, b, list_b)?))
}

/// The subject list in `path`, for `--train-list` / `--val-list` style options.
pub fn subject_list(path: &Path) -> DataResult<Vec<String>> {
    read_subject_list(path)
}

/// Fails unless two volumes of one subject share their grid (dims and affine).
pub fn check_same_grid(a: &Volume, b: &Volume) -> DataResult<()> {
    let (pa, pb) = (a.meta.source.display(), b.meta.source.display());
    if a.dims != b.dims {
        return Err(DataError::Mismatch(format!(
            "{pa} has dims {:?} but {pb} has {:?}",
            a.dims, b.dims
        )));
    }
    let worst = a
        .stored_affine()
        .iter()
        .flatten()
        .zip(b.stored_affine().iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    if worst > 1e-3 {
        return Err(DataError::Mismatch(format!(
            "{pa} and {pb} have different affines (up to {worst:.4} apart)"
        )));
    }
    Ok(())
}

/// How volumes become network inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceOptions {
    pub read: ReadOptions,
    pub norm: NormMethod,
    /// Slicing axis (2: axial in RAS+).
    pub axis: usize,
    /// Keep slices with at least this many non-zero voxels (training); 0 keeps every slice.
    pub min_foreground: usize,
    pub pad: Option<PadTarget>,
}

impl Default for SliceOptions {
    fn default() -> Self {
        SliceOptions {
            read: ReadOptions::default(),
            norm: NormMethod::default(),
            axis: 2,
            min_foreground: 1000,
            pad: Some(PadTarget::Exact(256, 256)),
        }
    }
}

/// Normalised, padded slices of one modality, with where each came from.
#[derive(Clone, Debug, Default)]
pub struct SliceSet {
    pub images: Vec<Image>,
    /// (subject index, slice index) of each image.
    pub origin: Vec<(usize, usize)>,
    pub subjects: Vec<String>,
    pub normalizers: Vec<Normalizer>,
}

impl SliceSet {
    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Adds the slices `keep` of one volume.
    fn push_volume(
        &mut self,
        subject: &str,
        vol: &Volume,
        keep: &[usize],
        opts: &SliceOptions,
    ) -> DataResult<()> {
        let norm = Normalizer::fit(vol, opts.norm)?;
        let data = norm.apply(&vol.data);
        let s = self.subjects.len();
        for &k in keep {
            let img = slices::slice(&data, vol.dims, opts.axis, k);
            let img = match opts.pad {
                Some(target) => slices::pad(&img, target, norm.background())?.0,
                None => img,
            };
            self.images.push(img);
            self.origin.push((s, k));
        }
        self.subjects.push(subject.to_string());
        self.normalizers.push(norm);
        Ok(())
    }

    /// Slices of every volume in `files` (subject, path), each volume normalised on its own.
    pub fn load(files: &[(String, PathBuf)], opts: &SliceOptions) -> DataResult<SliceSet> {
        let mut set = SliceSet::default();
        for (subject, path) in files {
            let vol = read(path, &opts.read)?;
            let keep = slices::informative(&vol.data, vol.dims, opts.axis, opts.min_foreground);
            set.push_volume(subject, &vol, &keep, opts)?;
        }
        Ok(set)
    }
}

/// Aligned slices of two modalities: `a.images[i]` and `b.images[i]` show the same anatomy.
#[derive(Clone, Debug, Default)]
pub struct PairedSlices {
    pub a: SliceSet,
    pub b: SliceSet,
}

impl PairedSlices {
    /// Reads, checks and slices every subject. Slices are chosen on modality A's foreground.
    pub fn load(subjects: &[SubjectFiles], opts: &SliceOptions) -> DataResult<PairedSlices> {
        let mut out = PairedSlices::default();
        for s in subjects {
            let (va, vb) = (read(&s.a, &opts.read)?, read(&s.b, &opts.read)?);
            check_same_grid(&va, &vb)?;
            let keep = slices::informative(&va.data, va.dims, opts.axis, opts.min_foreground);
            out.a.push_volume(&s.subject, &va, &keep, opts)?;
            out.b.push_volume(&s.subject, &vb, &keep, opts)?;
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.a.len()
    }
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }
}

/// A seeded random order of `n` samples for one epoch.
pub fn shuffled<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

/// Splits an order into batches of `size`; the last one may be smaller, as the reference's
/// DataLoader does.
pub fn batches(order: &[usize], size: usize) -> impl Iterator<Item = &[usize]> {
    order.chunks(size.max(1))
}

/// Stacks equally sized single-channel images into an `[n, 1, rows, cols]` tensor.
pub fn batch_tensor(images: &[&Image]) -> DataResult<Tensor> {
    let first = images
        .first()
        .ok_or_else(|| DataError::Mismatch("an empty batch".into()))?;
    if images
        .iter()
        .any(|i| (i.rows, i.cols) != (first.rows, first.cols))
    {
        return Err(DataError::Mismatch(
            "images of one batch differ in size".into(),
        ));
    }
    let data: Vec<f32> = images.iter().flat_map(|i| i.data.iter().copied()).collect();
    Tensor::from_vec([images.len(), 1, first.rows, first.cols], data)
        .map_err(|e| DataError::Mismatch(e.to_string()))
}
