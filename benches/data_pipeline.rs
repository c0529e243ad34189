//! `cargo bench --bench data_pipeline [FILE]`: read + normalise + slice one 240x240x155 volume
//! on one core (the phantom by default). Target: under 0.5 s. Same as `mrgan bench data`.

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("first pool");
    let file = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (_guard, path) = match file {
        Some(f) => (None, std::path::PathBuf::from(f)),
        None => {
            let (dir, path) = mrgan::bench::data_pipeline::brats_sized_phantom().expect("phantom");
            (Some(dir), path)
        }
    };
    let t = mrgan::bench::data_pipeline::run(&path, 5).expect("benchmark");
    println!(
        "{}: read {:.3} s, normalize {:.3} s, slice+pad {:.3} s, total {:.3} s (median of 5, 1 thread)",
        path.display(),
        t.read,
        t.normalize,
        t.slice,
        t.total()
    );
}
