//! `cargo bench --bench train_step`: one pix2pix iteration and one generator inference on the
//! CPU, with PyTorch's (`benches/torch_reference.py`, Python from $MRGAN_PYTHON or python3)
//! in the same run. Same as `mrgan bench train`.

fn main() {
    let python = std::env::var("MRGAN_PYTHON").unwrap_or_else(|_| "python3".into());
    print!(
        "{}",
        mrgan::bench::train_step::report(256, 5, &python).expect("benchmark")
    );
}
