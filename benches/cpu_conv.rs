//! `cargo bench --bench cpu_conv`: CPU conv fprop/dgrad/wgrad on the reference networks'
//! layers at 256x256, batch 1, next to the raw GEMM of the same shapes (same run).
//! The same table is `mrgan bench cpu-conv`.

use mrgan::bench::{cpu_conv, layers};

fn main() {
    let all: Vec<_> = [
        layers::unet_256(),
        layers::resnet_9blocks(),
        layers::patchgan(),
    ]
    .concat();
    let rows = cpu_conv::run(&all, 5, |done, total| eprint!("\r{done}/{total} layers"));
    eprintln!();
    cpu_conv::write_table(&rows, &mut std::io::stdout()).expect("stdout");
}
