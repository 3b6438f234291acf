//! NIfTI → store → view round trip, fMRI steps on a written-and-read image, fMRI recipes
//! through `prepare_store` (equal to the library chain, files in the hash, validation before
//! work), and homogenized calcium / connectome storage.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use neurofm_core::{ChannelInfo, ChannelKind, Info, Modality, Recording, Signal, Unit};
use neurofm_data::calcium::{add_connectome, add_homogenized};
use neurofm_data::fmri::{
    crop_or_pad, mask_from_image, parcellate, resample_tr, threshold_mask, zscore_in_mask,
    ZscoreMode,
};
use neurofm_data::{
    prepare_store, DataError, ExtraTensor, NewEntry, Recipe, Step, Store, WindowConfig, WindowIndex,
};
use neurofm_io::celegans::{
    homogenize, read_connectome, read_neuron_matrix, HomogenizeOptions, TimeAxis, UnknownNames,
};
use neurofm_io::nifti::write_nifti1;
use neurofm_io::open_raw;

fn image(nt: usize, dims: [usize; 3], tr: f64) -> Recording {
    let mut data = Vec::new();
    for t in 0..nt {
        for x in 0..dims[0] {
            for y in 0..dims[1] {
                for z in 0..dims[2] {
                    let brain = x > 0 && x + 1 < dims[0];
                    data.push(if brain {
                        500.0 + (x * 7 + y * 3 + z) as f32 + t as f32 * 0.5
                    } else {
                        2.0
                    });
                }
            }
        }
    }
    let affine = [
        [-3.0, 0.0, 0.0, 90.0],
        [0.0, 3.0, 0.0, -120.0],
        [0.0, 0.0, 3.5, -60.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    Recording::new(
        Info::new(Modality::FmriVolume, 1.0 / tr, vec![]),
        Signal::Volumes {
            n_volumes: nt,
            dims,
            affine,
            data,
        },
        vec![],
    )
    .unwrap()
}

#[test]
fn nifti_round_trip_through_store_and_steps() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(6, [6, 5, 4], 2.0);
    for name in ["a.nii", "a.nii.gz"] {
        let p = dir.path().join(name);
        write_nifti1(&p, &src).unwrap();
        let mut r = open_raw(&p).unwrap();
        let back = r.read_all().unwrap();
        assert_eq!(back.signal, src.signal);
        assert!((back.info.sfreq_hz - 0.5).abs() < 1e-9);

        let mut store = Store::create(&dir.path().join(format!("store_{name}"))).unwrap();
        let mut r = open_raw(&p).unwrap();
        let id = store
            .add_from_reader(r.as_mut(), Default::default(), &mut |_, _| {})
            .unwrap();
        let view = store.view(&id).unwrap();
        assert_eq!(view.shape(), &[6, 6, 5, 4]);
        assert_eq!(&view.data()[..], src.signal.data());
        assert_eq!(store.entry(&id).unwrap().modality, Modality::FmriVolume);
    }
    // steps chain: TR 2 -> 1.5, pad to 8^3, mask, z-score, parcellate by a 2-label atlas
    let p = dir.path().join("a.nii");
    let rec = neurofm_io::read_recording(&p).unwrap();
    let rs = resample_tr(&rec, 1.5).unwrap();
    assert_eq!(rs.signal.n_times(), 7); // 0..10 s every 1.5 s
    let padded = crop_or_pad(&rs, [8, 8, 8], 0.0).unwrap();
    let mask = threshold_mask(&padded, 0.5, true).unwrap();
    assert_eq!(mask.iter().filter(|&&m| m).count(), 4 * 5 * 4);
    let z = zscore_in_mask(&padded, &mask, ZscoreMode::Global, 0.0).unwrap();
    let mut atlas = padded.clone();
    if let Signal::Volumes {
        n_volumes, data, ..
    } = &mut atlas.signal
    {
        *n_volumes = 1;
        data.truncate(512);
        for (v, &m) in data.iter_mut().zip(&mask) {
            *v = if m { 1.0 } else { 0.0 };
        }
        data[0] = 2.0;
    }
    let roi = parcellate(&z, &atlas, None).unwrap();
    assert_eq!(roi.info.n_channels(), 2);
    // label 1 is the whole brain: its mean over all volumes is 0 after global z-scoring
    let m: f64 = roi
        .signal
        .channel(0)
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .sum::<f64>()
        / 7.0;
    assert!(m.abs() < 1e-4, "{m}");
    // label 2 is one background voxel: 0
    assert!(roi.signal.channel(1).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn homogenized_calcium_and_connectome_in_store() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("w.csv");
    std::fs::write(&csv, "AVAL,AVAR,\n1,2,3\n2,3,4\n3,5,6\n").unwrap();
    let rec =
        read_neuron_matrix(&csv, None, None, TimeAxis::Rate(1.0), UnknownNames::Error).unwrap();
    let h = homogenize(
        &rec,
        &HomogenizeOptions {
            dt_s: 0.5,
            smooth_samples: None,
            zscore: false,
        },
    )
    .unwrap();
    let mut store = Store::create(&dir.path().join("s")).unwrap();
    let id = add_homogenized(&mut store, &h).unwrap();
    let view = store.view(&id).unwrap();
    assert_eq!(view.shape(), &[302, 5]);
    let (shape, mask) = view.extra("mask").unwrap();
    assert_eq!(shape, vec![302]);
    assert_eq!(mask.iter().sum::<f32>(), 2.0);

    let chem = dir.path().join("chem.csv");
    std::fs::write(&chem, "pre,post,weight\nAVAL,AVAR,2\n").unwrap();
    let c = read_connectome(Some(&chem), None, UnknownNames::Error).unwrap();
    add_connectome(&mut store, "cook2019", &c, Default::default()).unwrap();
    let w = store.graph_tensor("cook2019", "chemical").unwrap();
    assert_eq!(w.len(), 302 * 302);
    assert_eq!(w.iter().sum::<f32>(), 2.0);
}

// ---- fMRI recipes: the steps through `prepare_store` --------------------------------------

/// A subject's run: `image` with a subject-dependent slow oscillation in the brain voxels, so
/// that every ROI series varies and the recordings differ.
fn subject_image(subject: usize, nt: usize) -> Recording {
    let mut rec = image(nt, [6, 5, 4], 2.0);
    let [_, ny, nz] = [6usize, 5, 4];
    if let Signal::Volumes { data, .. } = &mut rec.signal {
        let nv = 6 * ny * nz;
        for (i, v) in data.iter_mut().enumerate() {
            let (t, x) = (i / nv, (i % nv) / (ny * nz));
            if *v > 100.0 {
                *v += ((t as f32 * 0.7 + x as f32) * (subject as f32 + 1.0)).sin() * 9.0;
            }
        }
    }
    rec.info.subject = Some(format!("{subject:02}"));
    rec.info.run = Some("1".into());
    rec.info.provenance.source_path = format!("sub-{subject:02}_bold.nii.gz");
    rec.info.provenance.source_sha256 = format!("bold-{subject}");
    rec
}

/// The first volume of `rec` cropped/padded to 8³ with values from `f(x, y, z, value)`: an
/// image on the grid the recording has after `crop_or_pad [8, 8, 8]`.
fn image_on_8cube(rec: &Recording, f: impl Fn(usize, f32) -> f32) -> Recording {
    let mut one = rec.clone();
    if let Signal::Volumes {
        n_volumes,
        dims,
        data,
        ..
    } = &mut one.signal
    {
        *n_volumes = 1;
        data.truncate(dims.iter().product());
    }
    let mut cube = crop_or_pad(&one, [8, 8, 8], 0.0).unwrap();
    cube.info.sfreq_hz = 0.0;
    for (i, v) in cube.signal.data_mut().iter_mut().enumerate() {
        *v = f(i / 64, *v);
    }
    cube
}

/// Writes `mask.nii.gz` (brain voxels of the padded grid), `atlas.nii.gz` (label 1 for padded
/// x < 4, 2 for x >= 4, inside the brain) and `labels.tsv` into `dir`.
fn write_images(dir: &Path, rec: &Recording) {
    let mask = image_on_8cube(rec, |_, v| if v > 100.0 { 1.0 } else { 0.0 });
    write_nifti1(&dir.join("mask.nii.gz"), &mask).unwrap();
    let atlas = image_on_8cube(rec, |x, v| match (v > 100.0, x < 4) {
        (false, _) => 0.0,
        (true, true) => 1.0,
        (true, false) => 2.0,
    });
    write_nifti1(&dir.join("atlas.nii.gz"), &atlas).unwrap();
    std::fs::write(dir.join("labels.tsv"), "index\tname\n1\tLeft\n2\tRight\n").unwrap();
}

fn nifti_loader(calls: &Cell<usize>) -> impl Fn(&Path) -> Result<Recording, String> + '_ {
    move |p: &Path| {
        calls.set(calls.get() + 1);
        neurofm_io::read_recording(p).map_err(|e| e.to_string())
    }
}

const FMRI_RECIPE: &str = r#"
[[steps]]
type = "resample_tr"
tr_s = 1.5

[[steps]]
type = "crop_or_pad"
shape = [8, 8, 8]

[[steps]]
type = "zscore_in_mask"
mask = "mask.nii.gz"

[[steps]]
type = "parcellate"
atlas = "atlas.nii.gz"
labels = "labels.tsv"

[[steps]]
type = "zscore"

[[steps]]
type = "window"
length_s = 3.0
stride_s = 3.0
"#;

fn volume_store(dir: &Path, subjects: usize) -> Store {
    let mut store = Store::create(&dir.join("in")).unwrap();
    for s in 0..subjects {
        let extras = if s == 0 {
            // time-aligned with the 10 volumes: follows resample_tr
            vec![ExtraTensor {
                name: "motion".into(),
                shape: vec![2, 10],
                data: (0..20).map(|i| (i * i) as f32).collect(),
            }]
        } else {
            Vec::new()
        };
        store
            .add(
                &subject_image(s, 10),
                NewEntry {
                    extras,
                    ..NewEntry::default()
                },
            )
            .unwrap();
    }
    store
}

#[test]
fn fmri_recipe_equals_the_library_chain() {
    let dir = tempfile::tempdir().unwrap();
    let input = volume_store(dir.path(), 3);
    write_images(dir.path(), &subject_image(0, 10));
    let mut recipe = Recipe::from_toml_str(FMRI_RECIPE, "fmri.toml").unwrap();
    let calls = Cell::new(0);
    recipe.resolve(dir.path(), &nifti_loader(&calls)).unwrap();
    // mask and atlas read once for the whole run, not per recording
    assert_eq!(calls.get(), 2);
    let mut output = Store::create(&dir.path().join("out")).unwrap();
    let report = prepare_store(&recipe, &input, &mut output, &|_, _| {}).unwrap();
    assert_eq!(report.prepared.len(), 3);
    assert_eq!(calls.get(), 2);

    let mask_img = neurofm_io::read_recording(&dir.path().join("mask.nii.gz")).unwrap();
    let atlas = neurofm_io::read_recording(&dir.path().join("atlas.nii.gz")).unwrap();
    let names: BTreeMap<i64, String> = [(1, "Left".to_string()), (2, "Right".to_string())].into();
    for (in_id, out_id) in &report.prepared {
        let rec = input.read_recording(in_id).unwrap();
        let r = resample_tr(&rec, 1.5).unwrap();
        let r = crop_or_pad(&r, [8, 8, 8], 0.0).unwrap();
        let mask = mask_from_image(&r, &mask_img).unwrap();
        let r = zscore_in_mask(&r, &mask, ZscoreMode::Global, 0.0).unwrap();
        let r = parcellate(&r, &atlas, Some(&names)).unwrap();
        let (want, _) = Step::Zscore {}.apply(r).unwrap();

        let got = output.read_recording(out_id).unwrap();
        assert_eq!(got.signal, want.signal, "{in_id}");
        // 10 volumes at TR 2 s (0..18 s) every 1.5 s: 13 time points
        assert_eq!(got.signal.shape(), vec![2, 13]);
        assert_eq!(got.info.modality, Modality::FmriRoi);
        let chans: Vec<&str> = got.info.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(chans, ["Left", "Right"]);
        assert!((got.info.sfreq_hz - 1.0 / 1.5).abs() < 1e-12);
        for key in [
            "fmri.resample_tr",
            "fmri.crop_or_pad",
            "fmri.zscore_in_mask",
            "fmri.parcellate",
        ] {
            assert_eq!(
                got.info.metadata.get(key),
                want.info.metadata.get(key),
                "{key}"
            );
            assert!(got.info.metadata.contains_key(key), "{key}");
        }
        // the recorded recipe names the files with their sha256
        let e = output.entry(out_id).unwrap();
        let files = e.recipe.as_ref().unwrap()["files"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(files.len(), 3);
        assert_eq!(files[1]["key"], "atlas");
        assert_eq!(files[1]["step"], 3);
        assert_eq!(
            files[1]["sha256"],
            neurofm_io::sha256_file(&dir.path().join("atlas.nii.gz")).unwrap()
        );
        assert_eq!(e.recipe_hash.as_deref(), Some(recipe.hash().as_str()));
    }
    // the time-aligned extra went through resample_tr like the signal, and past parcellate
    let first = output.view(&report.prepared[0].1).unwrap();
    let (shape, motion) = first.extra("motion").unwrap();
    assert_eq!(shape, vec![2, 13]);
    let src: Vec<f32> = (0..20).map(|i| (i * i) as f32).collect();
    let (n, want) = neurofm_data::fmri::resample_tr_rows(&src, 10, 0.5, 1.5).unwrap();
    assert_eq!((n, motion), (13, want));
    // windows of the ROI series: 3 s at TR 1.5 s = 2 samples, 6 per recording
    let cfg = WindowConfig::from_store(&output).unwrap().unwrap();
    let index = WindowIndex::build(&output, &cfg).unwrap();
    assert_eq!(
        (index.windows.len(), index.window_len, index.n_channels),
        (18, 2, 2)
    );
}

#[test]
fn threshold_masks_and_per_voxel_zscores_equal_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let input = volume_store(dir.path(), 1);
    let recipe = Recipe::from_toml_str(
        "[[steps]]\ntype = \"crop_or_pad\"\nshape = [4, 6, 4]\nfill = -1.0\n\
         [[steps]]\ntype = \"zscore_in_mask\"\nthreshold = 0.5\nmode = \"per_voxel\"\nbackground = -3.0\n\
         [[steps]]\ntype = \"resample_tr\"\ntr_s = 3.0\n",
        "t.toml",
    )
    .unwrap();
    let mut output = Store::create(&dir.path().join("out")).unwrap();
    let report = prepare_store(&recipe, &input, &mut output, &|_, _| {}).unwrap();
    let rec = input.read_recording(&report.prepared[0].0).unwrap();
    let r = crop_or_pad(&rec, [4, 6, 4], -1.0).unwrap();
    let mask = threshold_mask(&r, 0.5, true).unwrap();
    let r = zscore_in_mask(&r, &mask, ZscoreMode::PerVoxel, -3.0).unwrap();
    let want = resample_tr(&r, 3.0).unwrap();
    let got = output.read_recording(&report.prepared[0].1).unwrap();
    assert_eq!(got.signal, want.signal);
    assert_eq!(got.info.modality, Modality::FmriVolume);
    assert_eq!(output.entries()[0].shape, vec![7, 4, 6, 4]);
    let e = &output.entries()[0];
    assert!(e.recipe.as_ref().unwrap().get("files").is_none());
    assert!(
        report.notes[0].1.contains("brain voxels"),
        "{:?}",
        report.notes
    );
    // absolute threshold: the same brain here (background 2, brain > 500)
    let abs = Recipe::from_toml_str(
        "[[steps]]\ntype = \"zscore_in_mask\"\nthreshold_abs = 100.0\n",
        "a.toml",
    )
    .unwrap();
    let (got, _) = abs.apply(rec.clone(), "r").unwrap();
    let mask = threshold_mask(&rec, 100.0, false).unwrap();
    let want = zscore_in_mask(&rec, &mask, ZscoreMode::Global, 0.0).unwrap();
    assert_eq!(got.signal, want.signal);
    // resample_tr on ROI series (a channel recording) is the library's too
    let roi = Recipe::from_toml_str(
        "[[steps]]\ntype = \"resample_tr\"\ntr_s = 0.8\n",
        "roi.toml",
    )
    .unwrap();
    let chans = (0..3)
        .map(|i| ChannelInfo::new(format!("roi{i}"), ChannelKind::Roi, Unit::Arbitrary))
        .collect();
    let series = Recording::new(
        Info::new(Modality::FmriRoi, 0.5, chans),
        Signal::channels(3, 20, (0..60).map(|i| (i as f32 * 0.3).sin()).collect()).unwrap(),
        vec![],
    )
    .unwrap();
    let (got, _) = roi.apply(series.clone(), "roi").unwrap();
    let want = resample_tr(&series, 0.8).unwrap();
    assert_eq!(got, want);
    assert_eq!(got.signal.shape(), vec![3, 48]);
}

#[test]
fn the_atlas_content_is_part_of_the_recipe_hash() {
    let dir = tempfile::tempdir().unwrap();
    let input = volume_store(dir.path(), 2);
    write_images(dir.path(), &subject_image(0, 10));
    let calls = Cell::new(0);
    let resolved = || {
        let mut r = Recipe::from_toml_str(FMRI_RECIPE, "fmri.toml").unwrap();
        r.resolve(dir.path(), &nifti_loader(&calls)).unwrap();
        r
    };
    let unresolved = Recipe::from_toml_str(FMRI_RECIPE, "fmri.toml").unwrap();
    let first = resolved();
    assert_ne!(first.hash(), unresolved.hash());
    assert_eq!(resolved().hash(), first.hash());
    let mut output = Store::create(&dir.path().join("out")).unwrap();
    let rep = prepare_store(&first, &input, &mut output, &|_, _| {}).unwrap();
    assert_eq!((rep.prepared.len(), rep.skipped.len()), (2, 0));
    // resume with the same files: nothing to do
    let rep = prepare_store(&resolved(), &input, &mut output, &|_, _| {}).unwrap();
    assert_eq!((rep.prepared.len(), rep.skipped.len()), (0, 2));

    // another atlas under the same name: another hash, and resume prepares again
    let atlas = dir.path().join("atlas.nii.gz");
    let mut a = neurofm_io::read_recording(&atlas).unwrap();
    for v in a.signal.data_mut() {
        if *v == 2.0 {
            *v = 1.0;
        }
    }
    a.signal.data_mut()[0] = 3.0;
    write_nifti1(&atlas, &a).unwrap();
    let second = resolved();
    assert_ne!(second.hash(), first.hash());
    let rep = prepare_store(&second, &input, &mut output, &|_, _| {}).unwrap();
    assert_eq!((rep.prepared.len(), rep.skipped.len()), (2, 0));
    let last = output.read_recording(&rep.prepared[0].1).unwrap();
    let chans: Vec<&str> = last.info.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(chans, ["Left", "label_3"]);
    // so does another labels table
    std::fs::write(dir.path().join("labels.tsv"), "1\tBrain\n").unwrap();
    assert_ne!(resolved().hash(), second.hash());
}

/// Prepares `text` (resolved in `dir`) on `input`; returns the error, after checking that
/// validation alone gives the same message and that nothing was written.
fn failure(text: &str, dir: &Path, input: &Store) -> (DataError, String) {
    let mut recipe = Recipe::from_toml_str(text, "case.toml").unwrap();
    let calls = Cell::new(0);
    recipe.resolve(dir, &nifti_loader(&calls)).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut out = Store::create(&out_dir.path().join("o")).unwrap();
    let err = match prepare_store(&recipe, input, &mut out, &|_, _| {}) {
        Ok(_) => panic!("applied: {text}"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(out.entries().is_empty(), "{msg}");
    assert_eq!(recipe.validate_store(input).unwrap_err().to_string(), msg);
    (err, msg)
}

#[test]
fn fmri_steps_fail_before_any_work_with_named_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let vols = volume_store(dir.path(), 1);
    write_images(dir.path(), &subject_image(0, 10));
    let mut eeg = Store::create(&dir.path().join("eeg")).unwrap();
    let chans = ["C3", "C4"]
        .iter()
        .map(|n| ChannelInfo::new(*n, ChannelKind::Eeg, Unit::Volt))
        .collect();
    let mut info = Info::new(Modality::Eeg, 100.0, chans);
    info.provenance.source_sha256 = "eeg".into();
    let data = (0..400).map(|i| (i % 7) as f32).collect();
    eeg.add(
        &Recording::new(info, Signal::channels(2, 200, data).unwrap(), vec![]).unwrap(),
        NewEntry::default(),
    )
    .unwrap();
    let vol_shape = "volumes [t, x, y, z] = [10, 6, 5, 4] — parcellate first";
    let cases: &[(&Store, &str, usize, &str, &[&str])] = &[
        // channel steps on volumes
        (&vols, "type = \"filter\"\nh_freq = 0.1", 1, "filter", &["needs a channel recording", vol_shape]),
        (&vols, "type = \"zscore\"", 1, "zscore", &["needs a channel recording", vol_shape]),
        (&vols, "type = \"window\"\nlength_s = 4.0\nstride_s = 4.0", 1, "window", &["needs a channel recording"]),
        (&vols, "type = \"pick\"\nchannels = [\"C3\"]", 1, "pick", &["needs a channel recording"]),
        // volume steps on channels
        (&eeg, "type = \"crop_or_pad\"\nshape = [8, 8, 8]", 1, "crop_or_pad", &["needs volumes [t, x, y, z]", "[channels, samples] = [2, 1]"]),
        (&eeg, "type = \"zscore_in_mask\"\nthreshold = 0.1", 1, "zscore_in_mask", &["needs volumes"]),
        (&eeg, "type = \"parcellate\"\natlas = \"atlas.nii.gz\"", 1, "parcellate", &["needs volumes"]),
        // parameters
        (&vols, "type = \"resample_tr\"\ntr_s = 0.0", 1, "resample_tr", &["TR must be > 0"]),
        (&eeg, "type = \"resample_tr\"\ntr_s = -2.0", 1, "resample_tr", &["TR must be > 0"]),
        (&vols, "type = \"crop_or_pad\"\nshape = [8, 0, 8]", 1, "crop_or_pad", &["[8, 0, 8]", "zero size"]),
        (&vols, "type = \"zscore_in_mask\"", 1, "zscore_in_mask", &["exactly one of mask"]),
        (&vols, "type = \"zscore_in_mask\"\nthreshold = 0.1\nthreshold_abs = 3.0", 1, "zscore_in_mask", &["exactly one of mask"]),
        (&vols, "type = \"zscore_in_mask\"\nthreshold = 1.5", 1, "zscore_in_mask", &["threshold = 1.5", "[0, 1)"]),
        // mask / atlas on another grid than the recording's at this step (no crop_or_pad)
        (&vols, "type = \"zscore_in_mask\"\nmask = \"mask.nii.gz\"", 1, "zscore_in_mask", &["mask ", "mask.nii.gz", "[8, 8, 8] grid", "on [6, 5, 4]"]),
        (&vols, "type = \"parcellate\"\natlas = \"atlas.nii.gz\"", 1, "parcellate", &["atlas ", "atlas.nii.gz", "[8, 8, 8] grid", "on [6, 5, 4]"]),
        // the grid after a crop_or_pad to another size
        (&vols, "type = \"crop_or_pad\"\nshape = [8, 8, 6]\n[[steps]]\ntype = \"parcellate\"\natlas = \"atlas.nii.gz\"", 2, "parcellate", &["atlas.nii.gz", "on [8, 8, 6]"]),
        // same size, other affine: 6x5x4 padded to 11³ then cropped to 8³ puts the origin one
        // voxel off in y from a direct pad to 8³
        (&vols, "type = \"crop_or_pad\"\nshape = [11, 11, 11]\n[[steps]]\ntype = \"crop_or_pad\"\nshape = [8, 8, 8]\n[[steps]]\ntype = \"parcellate\"\natlas = \"atlas.nii.gz\"", 3, "parcellate", &["atlas.nii.gz", "another voxel → world affine"]),
    ];
    for (store, step, index, name, needles) in cases {
        // a first step valid on both kinds of recording, so the failing one is not step 0
        let text = format!("[[steps]]\ntype = \"resample_tr\"\ntr_s = 2.0\n[[steps]]\n{step}\n");
        let (err, msg) = failure(&text, dir.path(), store);
        assert!(
            matches!(err, DataError::Step { index: i, .. } if i == *index),
            "{step}: {msg}"
        );
        assert!(
            msg.contains(&format!("step {index} (`{name}`)")),
            "{step}: {msg}"
        );
        for n in *needles {
            assert!(msg.contains(n), "{step}: `{n}` not in: {msg}");
        }
    }
    // after parcellate the recording is a channel recording again: channel steps apply
    let ok = format!("{FMRI_RECIPE}\n").replace(
        "type = \"window\"",
        "type = \"filter\"\nh_freq = 0.2\n[[steps]]\ntype = \"window\"",
    );
    let mut r = Recipe::from_toml_str(&ok, "ok.toml").unwrap();
    r.resolve(dir.path(), &nifti_loader(&Cell::new(0))).unwrap();
    r.validate_store(&vols).unwrap();
    // ... and volume steps do not
    let bad = FMRI_RECIPE.replace(
        "type = \"zscore\"",
        "type = \"crop_or_pad\"\nshape = [8, 8, 8]",
    );
    let (_, msg) = failure(&bad, dir.path(), &vols);
    assert!(
        msg.contains("step 4 (`crop_or_pad`)") && msg.contains("needs volumes"),
        "{msg}"
    );

    // a recipe with a file to read that was not resolved
    let r = Recipe::from_toml_str(FMRI_RECIPE, "fmri.toml").unwrap();
    let msg = r.validate_store(&vols).unwrap_err().to_string();
    assert!(
        msg.contains("step 2 (`zscore_in_mask`)") && msg.contains("not loaded"),
        "{msg}"
    );
}

#[test]
fn missing_or_unusable_images_fail_at_resolve_naming_step_and_file() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path(), &subject_image(0, 10));
    // a 4-D "atlas", a text file, a labels table with a bad line
    write_nifti1(&dir.path().join("bold.nii"), &subject_image(0, 3)).unwrap();
    std::fs::write(dir.path().join("notes.nii"), "not an image").unwrap();
    std::fs::write(dir.path().join("bad.tsv"), "1\tA\n2.5\tB\n").unwrap();
    let zero = image_on_8cube(&subject_image(0, 1), |_, _| 0.0);
    write_nifti1(&dir.path().join("empty.nii"), &zero).unwrap();
    let cases: &[(&str, usize, &str, &[&str])] = &[
        (
            "type = \"parcellate\"\natlas = \"nope.nii.gz\"",
            1,
            "parcellate",
            &["atlas", "nope.nii.gz"],
        ),
        (
            "type = \"zscore_in_mask\"\nmask = \"missing/mask.nii\"",
            1,
            "zscore_in_mask",
            &["mask", "missing/mask.nii"],
        ),
        (
            "type = \"parcellate\"\natlas = \"bold.nii\"",
            1,
            "parcellate",
            &["bold.nii", "3 volumes"],
        ),
        (
            "type = \"parcellate\"\natlas = \"notes.nii\"",
            1,
            "parcellate",
            &["notes.nii"],
        ),
        (
            "type = \"parcellate\"\natlas = \"atlas.nii.gz\"\nlabels = \"bad.tsv\"",
            1,
            "parcellate",
            &["labels", "bad.tsv", "line 2", "`2.5`"],
        ),
        (
            "type = \"parcellate\"\natlas = \"empty.nii\"",
            1,
            "parcellate",
            &["empty.nii", "no non-zero label"],
        ),
        (
            "type = \"zscore_in_mask\"\nmask = \"empty.nii\"",
            1,
            "zscore_in_mask",
            &["empty.nii", "no non-zero voxel"],
        ),
    ];
    for (step, index, name, needles) in cases {
        let text =
            format!("[[steps]]\ntype = \"crop_or_pad\"\nshape = [8, 8, 8]\n[[steps]]\n{step}\n");
        let mut r = Recipe::from_toml_str(&text, "case.toml").unwrap();
        let calls = Cell::new(0);
        let err = r.resolve(dir.path(), &nifti_loader(&calls)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::StepFile { .. }), "{step}: {msg}");
        assert!(
            msg.starts_with(&format!("step {index} (`{name}`)")),
            "{step}: {msg}"
        );
        for n in *needles {
            assert!(msg.contains(n), "{step}: `{n}` not in: {msg}");
        }
    }
    // an absolute path is used as is
    let abs = dir.path().join("atlas.nii.gz");
    let text = format!(
        "[[steps]]\ntype = \"crop_or_pad\"\nshape = [8, 8, 8]\n[[steps]]\ntype = \"parcellate\"\natlas = {:?}\n",
        abs.display().to_string()
    );
    let mut r = Recipe::from_toml_str(&text, "abs.toml").unwrap();
    r.resolve(Path::new("/nonexistent"), &nifti_loader(&Cell::new(0)))
        .unwrap();
    assert_eq!(r.files().len(), 1);
    // one file used by two steps is read once
    let text = "[[steps]]\ntype = \"crop_or_pad\"\nshape = [8, 8, 8]\n\
                [[steps]]\ntype = \"zscore_in_mask\"\nmask = \"atlas.nii.gz\"\n\
                [[steps]]\ntype = \"parcellate\"\natlas = \"atlas.nii.gz\"\n";
    let mut r = Recipe::from_toml_str(text, "twice.toml").unwrap();
    let calls = Cell::new(0);
    r.resolve(dir.path(), &nifti_loader(&calls)).unwrap();
    assert_eq!((calls.get(), r.files().len()), (1, 2));
}
