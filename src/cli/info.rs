//! `mrgan info FILE`: what a checkpoint or a volume holds.

use std::path::PathBuf;

use clap::Args;

use mrgan::checkpoint::detect::detect_generator;
use mrgan::checkpoint::native::read_tensors;
use mrgan::checkpoint::torch_pth::{self, PthTensor, StateDict};
use mrgan::data::nifti::{ReadOptions, affine, is_nifti_path, read};

#[derive(Args)]
pub struct InfoArgs {
    /// A `.pth` / `.safetensors` checkpoint or a `.nii` / `.nii.gz` volume.
    file: PathBuf,
}

/// Loads either checkpoint format as a state_dict.
pub fn load_state_dict_file(path: &std::path::Path) -> anyhow::Result<StateDict> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        let (tensors, _) = read_tensors(path)?;
        let mut list: Vec<(String, PthTensor)> = tensors
            .into_iter()
            .map(|(k, (shape, data))| {
                (
                    k,
                    PthTensor {
                        shape,
                        data,
                        dtype: mrgan::checkpoint::pickle::DType::F32,
                    },
                )
            })
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(StateDict { tensors: list })
    } else {
        Ok(torch_pth::read(path)?)
    }
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let path = &args.file;
    if is_nifti_path(path) {
        let v = read(
            path,
            &ReadOptions {
                orientation: mrgan::data::nifti::OrientationMode::AsStored,
                ..Default::default()
            },
        )?;
        let h = &v.meta.header;
        let (lo, hi) = v
            .data
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let nonzero = v.data.iter().filter(|&&x| x != 0.0).count();
        println!("{}: NIfTI-1 volume", path.display());
        println!(
            "  dims {:?}, voxel size {:?} mm, datatype code {}",
            v.dims,
            &h.pixdim[1..4],
            h.datatype
        );
        println!(
            "  orientation {} (qform code {}, sform code {})",
            v.stored_orientation(),
            h.qform_code,
            h.sform_code
        );
        for row in affine(h) {
            println!(
                "  affine [{:>9.3} {:>9.3} {:>9.3} {:>9.3}]",
                row[0], row[1], row[2], row[3]
            );
        }
        println!(
            "  scl_slope {} scl_inter {}; values {lo} .. {hi}; {nonzero} non-zero voxels",
            h.scl_slope, h.scl_inter
        );
        return Ok(());
    }
    let sd = load_state_dict_file(path)?;
    let params: usize = sd
        .tensors
        .iter()
        .filter(|(k, _)| !k.contains("running_") && !k.ends_with("num_batches_tracked"))
        .map(|(_, t)| t.data.len())
        .sum();
    println!(
        "{}: {} tensors, {params} parameters",
        path.display(),
        sd.tensors.len()
    );
    match detect_generator(&sd) {
        Ok(c) => println!(
            "  generator {} ngf {} norm {:?} dropout {} channels {} -> {}",
            c.arch.name(),
            c.ngf,
            c.norm,
            c.dropout,
            c.input_nc,
            c.output_nc
        ),
        Err(e) => println!("  not a recognised generator: {e}"),
    }
    for (k, t) in &sd.tensors {
        println!("  {k:<60} {:?} {:?}", t.shape, t.dtype);
    }
    Ok(())
}
