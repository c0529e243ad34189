//! `cargo bench --bench train_step`: one pix2pix iteration and one generator inference on the
//! CPU (batch 1, 256 x 256), with PyTorch's (`benches/torch_reference.py`, Python from
//! $MRGAN_PYTHON or python3) in the same run. Same as `mrgan bench train --device cpu`.

fn main() {
    let python = std::env::var("MRGAN_PYTHON").unwrap_or_else(|_| "python3".into());
    let bench = mrgan::bench::train_step::TrainBench {
        model: mrgan::bench::train_step::BenchModel::Pix2pix,
        size: 256,
        batch: 1,
        iters: 5,
        device: mrgan::device::Device::Cpu,
    };
    print!(
        "{}",
        mrgan::bench::train_step::report(&bench, &python).expect("benchmark")
    );
}
