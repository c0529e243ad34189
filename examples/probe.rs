fn main() {
    for p in std::env::args().skip(1) {
        let t = std::time::Instant::now();
        let v = mrgan::data::nifti::read(std::path::Path::new(&p), &Default::default()).unwrap();
        let (mn, mx) = v
            .data
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        println!(
            "{p}: dims {:?} stored {} min {mn} max {mx} {:?}",
            v.dims,
            v.stored_orientation(),
            t.elapsed()
        );
    }
}
