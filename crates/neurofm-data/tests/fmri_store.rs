//! NIfTI → store → view round trip, fMRI steps on a written-and-read image, and homogenized
//! calcium / connectome storage.
#![allow(clippy::unwrap_used)]

use neurofm_core::{Info, Modality, Recording, Signal};
use neurofm_data::calcium::{add_connectome, add_homogenized};
use neurofm_data::fmri::{
    crop_or_pad, parcellate, resample_tr, threshold_mask, zscore_in_mask, ZscoreMode,
};
use neurofm_data::Store;
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
