//! Feeds arbitrary bytes to the `.pth` reader: it must return Ok or Err, never panic, hang
//! or allocate without bound. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run pth_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mrgan::checkpoint::torch_pth::read_bytes(data, std::path::Path::new("fuzz.pth"));
});
