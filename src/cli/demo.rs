//! `mrgan demo`: the end-to-end job on a built-in phantom. The networks, data pipeline and
//! training loop it needs are not in the engine yet, so for now it says so and points at
//! what already runs.

pub fn run() -> anyhow::Result<()> {
    println!("mrgan demo: not yet available.");
    println!("The engine (tensors, CPU ops, autograd, Adam) is in place; the phantom data,");
    println!("networks and training loop that the demo runs land with the end-to-end work.");
    println!("What runs today: `cargo test --release` and `mrgan bench cpu-conv`.");
    Ok(())
}
