//! Development aid: list a .pth file's tensors; with a second argument, write them back.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sd = mrgan::checkpoint::torch_pth::read(args[1].as_ref()).unwrap();
    for (n, t) in &sd.tensors {
        println!(
            "{n} {:?} {:?} {:?}",
            t.shape,
            t.dtype,
            &t.data[..t.data.len().min(3)]
        );
    }
    if let Some(out) = args.get(2) {
        let list: Vec<(String, Vec<usize>, &[f32])> = sd
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.clone(), &t.data[..]))
            .collect();
        mrgan::checkpoint::torch_pth::write(out.as_ref(), &list).unwrap();
    }
}
