//! Normalisation, slicing, the phantom, datasets, augmentation and patch sampling.

use std::path::Path;

use mrgan::data::augment::{AugmentOptions, augment, flip_horizontal, resize};
use mrgan::data::dataset::{
    PairedSlices, SliceOptions, SliceSet, batch_tensor, batches, paired_subjects, shuffled,
    unpaired_sets,
};
use mrgan::data::discover::{find_modality, volumes};
use mrgan::data::nifti::{OutDtype, write};
use mrgan::data::normalize::{NormMethod, Normalizer, percentile};
use mrgan::data::patches::{PatchOptions, extract, place};
use mrgan::data::phantom::{Contrast, PhantomSpec, Tissue, generate};
use mrgan::data::slices::{self, Image, PadTarget, assemble, crop, pad, slice};
use mrgan::data::volume::Volume;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

fn small_spec(seed: u64) -> PhantomSpec {
    PhantomSpec {
        dims: [40, 44, 24],
        seed,
        ..PhantomSpec::default()
    }
}

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Writes phantom subjects as `<dir>/<name>/{t1,t2,flair,pd,labels}.nii.gz`.
fn phantom_folder(dir: &Path, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        mrgan::data::phantom::write(&generate(&small_spec(i as u64)), &dir.join(name)).unwrap();
    }
}

#[test]
fn percentile_matches_numpy_linear_interpolation() {
    // numpy.percentile([1, 2, 3, 4, 10], [0, 12.5, 50, 99.5, 100]) = 1, 1.5, 3, 9.88, 10
    for (q, want) in [
        (0.0, 1.0),
        (12.5, 1.5),
        (50.0, 3.0),
        (99.5, 9.88),
        (100.0, 10.0),
    ] {
        let mut v = vec![4.0, 10.0, 1.0, 3.0, 2.0];
        assert!((percentile(&mut v, q) - want).abs() < 1e-5, "q {q}");
    }
}

#[test]
fn normalisation_and_inverse() {
    let vol = generate(&small_spec(1)).volume(Contrast::T2).clone();
    let fg = vol.foreground();
    for method in [
        NormMethod::Percentile {
            low: 0.0,
            high: 100.0,
        },
        NormMethod::ZScore,
    ] {
        let n = Normalizer::fit(&vol, method).unwrap();
        let x = n.apply(&vol.data);
        if let Normalizer::Percentile { .. } = n {
            assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
        }
        assert!(
            x.iter().zip(&fg).all(|(&v, &f)| f || v == n.background()),
            "background stays background"
        );
        let back = n.invert(&x, Some(&fg));
        for (i, (&b, &v)) in back.iter().zip(&vol.data).enumerate() {
            // f32 rounding of a scale by ~1e3 and back: well under 1e-3 units.
            assert!(
                (b - v).abs() <= 1e-3 * v.abs().max(1.0),
                "{method:?} voxel {i}: {b} vs {v}"
            );
        }
    }
    // Default percentiles clip the tails: inverting gives the clipped values.
    let n = Normalizer::fit(&vol, NormMethod::default()).unwrap();
    let Normalizer::Percentile { lo, hi } = n else {
        panic!()
    };
    let back = n.invert(&n.apply(&vol.data), Some(&fg));
    for (&b, &v) in back.iter().zip(&vol.data).filter(|(_, v)| **v != 0.0) {
        assert!((b - v.clamp(lo, hi)).abs() <= 1e-3 * hi);
    }
}

#[test]
fn normalising_an_empty_volume_is_an_error() {
    let vol = Volume::new_ras([4, 4, 4], vec![0.0; 64], [1.0; 3], "blank.nii.gz");
    let msg = Normalizer::fit(&vol, NormMethod::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("blank.nii.gz") && msg.contains("no foreground"),
        "{msg}"
    );
}

#[test]
fn slice_convention_and_exact_reassembly() {
    let dims = [5, 4, 3];
    let data: Vec<f32> = (0..60).map(|i| i as f32).collect();
    // Along axis 2 the image is vol[:, :, k]: rows = x, cols = y.
    let img = slice(&data, dims, 2, 1);
    assert_eq!((img.rows, img.cols), (5, 4));
    let k = 1;
    assert_eq!(img.get(3, 2), data[3 + 5 * (2 + 4 * k)]);
    for axis in 0..3 {
        let images: Vec<Image> = (0..dims[axis])
            .map(|k| slice(&data, dims, axis, k))
            .collect();
        assert_eq!(assemble(&images, dims, axis).unwrap(), data, "axis {axis}");
    }
    assert!(assemble(&[img], dims, 2).is_err());
}

#[test]
fn padding_is_undone_exactly() {
    let img = Image {
        rows: 5,
        cols: 7,
        data: (0..35).map(|i| i as f32).collect(),
    };
    for target in [
        PadTarget::Exact(8, 10),
        PadTarget::MultipleOf(4),
        PadTarget::Exact(5, 7),
    ] {
        let (padded, p) = pad(&img, target, -1.0).unwrap();
        assert_eq!(crop(&padded, p), img);
    }
    let (p256, p) = pad(
        &Image {
            rows: 240,
            cols: 240,
            data: vec![0.5; 240 * 240],
        },
        PadTarget::Exact(256, 256),
        -1.0,
    )
    .unwrap();
    assert_eq!((p.rows, p.cols), ([8, 8], [8, 8]));
    assert_eq!(p256.get(0, 0), -1.0);
    assert!(pad(&img, PadTarget::Exact(4, 7), 0.0).is_err());
}

#[test]
fn phantom_contrasts_follow_the_physics() {
    let ph = generate(&small_spec(3));
    let mean_of = |c: Contrast, t: Tissue| {
        let v = ph.volume(c);
        let vals: Vec<f32> = v
            .data
            .iter()
            .zip(&ph.labels)
            .filter(|(_, l)| **l == t)
            .map(|(x, _)| *x)
            .collect();
        vals.iter().sum::<f32>() / vals.len() as f32
    };
    use Tissue::*;
    assert!(mean_of(Contrast::T1, WhiteMatter) > mean_of(Contrast::T1, GreyMatter));
    assert!(mean_of(Contrast::T1, GreyMatter) > mean_of(Contrast::T1, Csf));
    assert!(mean_of(Contrast::T2, Csf) > mean_of(Contrast::T2, GreyMatter));
    assert!(mean_of(Contrast::T2, GreyMatter) > mean_of(Contrast::T2, WhiteMatter));
    assert!(
        mean_of(Contrast::Flair, Csf) < mean_of(Contrast::Flair, WhiteMatter),
        "FLAIR suppresses fluid"
    );
    assert!(mean_of(Contrast::Pd, Csf) > mean_of(Contrast::Pd, WhiteMatter));
    // Skull-stripped: the foreground is exactly the brain.
    let t1 = ph.volume(Contrast::T1);
    assert!(
        t1.data
            .iter()
            .zip(&ph.labels)
            .all(|(&v, l)| (v != 0.0) == l.is_brain())
    );
    // Deterministic for a seed, different across seeds.
    assert_eq!(
        generate(&small_spec(3)).volume(Contrast::T2).data,
        ph.volume(Contrast::T2).data
    );
    assert_ne!(
        generate(&small_spec(4)).volume(Contrast::T2).data,
        ph.volume(Contrast::T2).data
    );
}

#[test]
fn paired_subjects_by_folder_and_bids_names() {
    let dir = tempfile::tempdir().unwrap();
    phantom_folder(dir.path(), &["s1", "s2"]);
    let found = paired_subjects(dir.path(), "t1", "t2", None).unwrap();
    assert_eq!(
        found.iter().map(|s| s.subject.as_str()).collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    assert!(found[0].a.ends_with("s1/t1.nii.gz") && found[0].b.ends_with("s1/t2.nii.gz"));
    // A subject list selects and orders.
    let only = paired_subjects(dir.path(), "t1", "t2", Some(&["s2".to_string()])).unwrap();
    assert_eq!(only.len(), 1);
    let msg = paired_subjects(dir.path(), "t1", "t2", Some(&["s9".to_string()]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("s9"), "{msg}");

    // BIDS: sub-01/anat/sub-01_T1w.nii.gz
    let bids = tempfile::tempdir().unwrap();
    let anat = bids.path().join("sub-01/anat");
    std::fs::create_dir_all(&anat).unwrap();
    let ph = generate(&small_spec(5));
    write(
        &anat.join("sub-01_T1w.nii.gz"),
        ph.volume(Contrast::T1),
        OutDtype::Int16,
    )
    .unwrap();
    write(
        &anat.join("sub-01_T2w.nii.gz"),
        ph.volume(Contrast::T2),
        OutDtype::Int16,
    )
    .unwrap();
    let found = paired_subjects(bids.path(), "T1w", "T2w", None).unwrap();
    assert_eq!(found[0].subject, "sub-01");
    assert!(
        find_modality(&bids.path().join("sub-01"), "t2w")
            .unwrap()
            .is_some(),
        "case-insensitive"
    );
}

#[test]
fn unmatched_and_empty_folders_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let msg = volumes(dir.path(), None).unwrap_err().to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("no NIfTI"),
        "{msg}"
    );
    phantom_folder(dir.path(), &["s1"]);
    std::fs::remove_file(dir.path().join("s1/t2.nii.gz")).unwrap();
    phantom_folder(&dir.path().join("x"), &[]);
    let msg = paired_subjects(dir.path(), "t1", "t2", None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no NIfTI volumes of modality \"t2\""), "{msg}");
}

#[test]
fn paired_volumes_must_share_their_grid() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s1");
    std::fs::create_dir_all(&s).unwrap();
    let a = generate(&small_spec(1));
    let b = generate(&PhantomSpec {
        dims: [40, 44, 20],
        ..small_spec(1)
    });
    write(
        &s.join("t1.nii.gz"),
        a.volume(Contrast::T1),
        OutDtype::Int16,
    )
    .unwrap();
    write(
        &s.join("t2.nii.gz"),
        b.volume(Contrast::T2),
        OutDtype::Int16,
    )
    .unwrap();
    let subjects = paired_subjects(dir.path(), "t1", "t2", None).unwrap();
    let msg = PairedSlices::load(&subjects, &SliceOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("t1.nii.gz") && msg.contains("t2.nii.gz") && msg.contains("dims"),
        "{msg}"
    );

    let mut shifted = a.volume(Contrast::T2).clone();
    shifted.meta.header.srow_x[3] = 5.0;
    write(&s.join("t2.nii.gz"), &shifted, OutDtype::Int16).unwrap();
    let msg = PairedSlices::load(&subjects, &SliceOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("different affines"), "{msg}");
}

#[test]
fn slices_batches_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    phantom_folder(dir.path(), &["s1", "s2"]);
    let subjects = paired_subjects(dir.path(), "t1", "t2", None).unwrap();
    let opts = SliceOptions {
        min_foreground: 200,
        pad: Some(PadTarget::MultipleOf(16)),
        ..SliceOptions::default()
    };
    let pairs = PairedSlices::load(&subjects, &opts).unwrap();
    assert!(pairs.len() > 10 && pairs.a.origin == pairs.b.origin);
    assert_eq!((pairs.a.images[0].rows, pairs.a.images[0].cols), (48, 48));
    assert_eq!(pairs.a.subjects, ["s1", "s2"]);
    // Every slice but the informative ones is skipped; with threshold 0 none is.
    let all = SliceSet::load(
        &[("s1".into(), subjects[0].a.clone())],
        &SliceOptions {
            min_foreground: 0,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(all.len(), 24);

    let order = shuffled(pairs.len(), &mut rng(1));
    assert_eq!(order, shuffled(pairs.len(), &mut rng(1)), "seeded");
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..pairs.len()).collect::<Vec<_>>());
    let b: Vec<&[usize]> = batches(&order, 4).collect();
    assert_eq!(b.len(), pairs.len().div_ceil(4));
    let imgs: Vec<&Image> = b[0].iter().map(|&i| &pairs.a.images[i]).collect();
    let t = batch_tensor(&imgs).unwrap();
    assert_eq!(t.dims(), [4, 1, 48, 48]);
    assert_eq!(&t.as_slice()[48 * 48..2 * 48 * 48], &imgs[1].data[..]);
}

#[test]
fn augmentation_crops_and_flips_pairs_alike() {
    let a = Image {
        rows: 6,
        cols: 8,
        data: (0..48).map(|i| i as f32).collect(),
    };
    let b = Image {
        data: a.data.iter().map(|v| -v).collect(),
        ..a.clone()
    };
    let opts = AugmentOptions {
        load_size: None,
        crop_size: Some(4),
        flip: true,
    };
    for seed in 0..20 {
        let out = augment(&[&a, &b], &opts, &mut rng(seed));
        assert_eq!((out[0].rows, out[0].cols), (4, 4));
        let negated: Vec<f32> = out[1].data.iter().map(|v| -v).collect();
        assert_eq!(out[0].data, negated, "same crop and flip for A and B");
    }
    assert_eq!(flip_horizontal(&flip_horizontal(&a)), a);
    // Bicubic resize: identity at the same size, constant stays constant, sizes change.
    let c = Image {
        rows: 10,
        cols: 10,
        data: vec![0.3; 100],
    };
    assert!(
        resize(&c, 13, 7)
            .data
            .iter()
            .all(|v| (v - 0.3).abs() < 1e-6)
    );
    let same = resize(&a, 6, 8);
    assert!(
        same.data
            .iter()
            .zip(&a.data)
            .all(|(x, y)| (x - y).abs() < 1e-4)
    );
    let up = resize(&a, 12, 16);
    assert_eq!((up.rows, up.cols), (12, 16));
}

#[test]
fn patch_sampling_prefers_foreground_and_always_ends() {
    let ph = generate(&small_spec(2));
    let vol = ph.volume(Contrast::T1);
    let mask = vol.foreground();
    let opts = PatchOptions {
        size: [16, 16, 8],
        foreground_bias: 1.0,
        min_foreground: 0.5,
        max_tries: 50,
    };
    for seed in 0..10 {
        let p = place(&mask, vol.dims, &opts, &mut rng(seed));
        assert!(p.foreground >= 0.5, "seed {seed}: {p:?}");
        assert!((0..3).all(|a| p.origin[a] + opts.size[a] <= vol.dims[a]));
    }
    // An impossible rule ends after max_tries with the best patch seen.
    let blank = vec![false; mask.len()];
    let p = place(
        &blank,
        vol.dims,
        &PatchOptions {
            min_foreground: 0.9,
            ..opts
        },
        &mut rng(0),
    );
    assert_eq!(p.foreground, 0.0);
    // Extraction copies the box; outside the volume is the fill value.
    let cut = extract(&vol.data, vol.dims, [1, 2, 3], [4, 3, 2], -1.0);
    assert_eq!(cut[0], vol.get(1, 2, 3));
    assert_eq!(cut[4 * 3 * 2 - 1], vol.get(4, 4, 4));
    let edge = extract(&vol.data, vol.dims, [38, 0, 0], [4, 1, 1], -1.0);
    assert_eq!(&edge[2..], &[-1.0, -1.0]);
}

#[test]
fn informative_slices_follow_the_threshold() {
    let dims = [4, 4, 3];
    let mut data = vec![0.0; 48];
    data[16..20].iter_mut().for_each(|v| *v = 1.0); // 4 voxels in slice z = 1
    assert_eq!(slices::informative(&data, dims, 2, 4), vec![1]);
    assert!(slices::informative(&data, dims, 2, 5).is_empty());
}

#[test]
fn unpaired_sets_are_independent() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    phantom_folder(da.path(), &["a1", "a2"]);
    phantom_folder(db.path(), &["b1"]);
    let (a, b) = unpaired_sets((da.path(), "t1", None), (db.path(), "t2", None)).unwrap();
    assert_eq!(
        a.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    assert_eq!(b.len(), 1);
    assert!(b[0].1.ends_with("b1/t2.nii.gz"));
    let only = ["a2".to_string()];
    let (a, _) = unpaired_sets((da.path(), "t1", Some(&only)), (db.path(), "t2", None)).unwrap();
    assert_eq!(a.len(), 1);
}
