//! Finding volumes on disk: subjects in folders, modalities by name, and pairing by subject.
//!
//! Layouts understood:
//! - `<root>/<subject>/<name>.nii.gz` (e.g. `t1.nii.gz`, `t2.nii.gz`), searched recursively
//!   inside the subject folder (so BIDS `sub-01/anat/sub-01_T1w.nii.gz` works too);
//! - a modality matches a file whose name without extension equals it or ends in
//!   `_<name>` (BIDS suffixes `_T1w`, `_T2w`), ignoring case;
//! - `<root>/<key>.nii.gz`: loose files, keyed by their own name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{DataError, DataResult};
use super::nifti::{is_nifti_path, stem};

/// A volume found on disk, with the key it is paired by (subject or file name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub path: PathBuf,
}

fn read_dir_sorted(dir: &Path) -> DataResult<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<DataResult<_>>()?;
    paths.sort();
    Ok(paths)
}

/// NIfTI files anywhere below `dir`, sorted.
fn nifti_files(dir: &Path) -> DataResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            out.extend(nifti_files(&p)?);
        } else if is_nifti_path(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Whether `path` holds modality `name`.
pub fn matches_modality(path: &Path, name: &str) -> bool {
    let s = stem(path).to_lowercase();
    let name = name.to_lowercase();
    s == name || s.ends_with(&format!("_{name}"))
}

/// The one volume of modality `name` inside subject folder `dir`, if any; an error if several match.
pub fn find_modality(dir: &Path, name: &str) -> DataResult<Option<PathBuf>> {
    let found: Vec<PathBuf> = nifti_files(dir)?
        .into_iter()
        .filter(|p| matches_modality(p, name))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next()),
        _ => Err(DataError::invalid(
            dir,
            format!(
                "holds {} volumes matching {name:?}: {:?}",
                found.len(),
                found
            ),
        )),
    }
}

/// The volumes under `root` (a file is itself): loose NIfTI files keyed by name, and one per
/// subject folder keyed by the folder's name: the one matching `name`, or the folder's only
/// volume when `name` is None.
pub fn volumes(root: &Path, name: Option<&str>) -> DataResult<Vec<Entry>> {
    if root.is_file() {
        return Ok(vec![Entry {
            key: stem(root),
            path: root.to_path_buf(),
        }]);
    }
    if !root.is_dir() {
        return Err(DataError::invalid(root, "no such file or folder"));
    }
    let mut out = Vec::new();
    for p in read_dir_sorted(root)? {
        if p.is_dir() {
            let key = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let path = match name {
                Some(n) => find_modality(&p, n)?,
                None => {
                    let all = nifti_files(&p)?;
                    if all.len() > 1 {
                        return Err(DataError::invalid(
                            &p,
                            format!(
                                "holds {} volumes; say which one with a modality name",
                                all.len()
                            ),
                        ));
                    }
                    all.into_iter().next()
                }
            };
            out.extend(path.map(|path| Entry { key, path }));
        } else if is_nifti_path(&p) && name.is_none_or(|n| matches_modality(&p, n)) {
            out.push(Entry {
                key: stem(&p),
                path: p,
            });
        }
    }
    if out.is_empty() {
        let what = name.map_or(String::new(), |n| format!(" of modality {n:?}"));
        return Err(DataError::invalid(
            root,
            format!("contains no NIfTI volumes{what}"),
        ));
    }
    Ok(out)
}

/// Pairs `a` and `b` entries by key, in key order. Keys present on one side only are an
/// error that names them, unless `allow_unmatched`, in which case they are skipped.
pub fn pair(
    a: Vec<Entry>,
    b: Vec<Entry>,
    allow_unmatched: bool,
) -> DataResult<Vec<(Entry, Entry)>> {
    let mut bs: BTreeMap<String, Entry> = b.into_iter().map(|e| (e.key.clone(), e)).collect();
    let mut pairs = Vec::new();
    let mut lonely = Vec::new();
    for e in a {
        match bs.remove(&e.key) {
            Some(m) => pairs.push((e, m)),
            None => lonely.push(e.path.display().to_string()),
        }
    }
    lonely.extend(bs.values().map(|e| e.path.display().to_string()));
    if pairs.is_empty() || (!lonely.is_empty() && !allow_unmatched) {
        return Err(DataError::Mismatch(format!(
            "{} paired volumes; without a partner: {}",
            pairs.len(),
            if lonely.is_empty() {
                "none".to_string()
            } else {
                lonely.join(", ")
            }
        )));
    }
    pairs.sort_by(|x, y| x.0.key.cmp(&y.0.key));
    Ok(pairs)
}

/// Reads a subject list file: one subject per line; blank lines and `#` comments ignored.
pub fn read_subject_list(path: &Path) -> DataResult<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let subjects: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if subjects.is_empty() {
        return Err(DataError::invalid(path, "lists no subjects"));
    }
    Ok(subjects)
}
