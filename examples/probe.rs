//! Development aid: brain-mask agreement between two subjects after canonical reorientation,
//! and with the second flipped along each axis.
use mrgan::data::nifti;
fn ncc(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&v| v as f64).sum::<f64>() / n,
        b.iter().map(|&v| v as f64).sum::<f64>() / n,
    );
    let (mut s, mut sa, mut sb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        s += x * y;
        sa += x * x;
        sb += y * y;
    }
    s / (sa * sb).sqrt()
}
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let a = nifti::read(args[1].as_ref(), &Default::default()).unwrap();
    let b = nifti::read(args[2].as_ref(), &Default::default()).unwrap();
    let ma: Vec<f32> = a.data.iter().map(|&v| (v != 0.0) as u8 as f32).collect();
    let mb: Vec<f32> = b.data.iter().map(|&v| (v != 0.0) as u8 as f32).collect();
    println!("canonical: {:.3}", ncc(&ma, &mb));
    let d = b.dims;
    for axis in 0..3 {
        let mut f = vec![0.0; mb.len()];
        for z in 0..d[2] {
            for y in 0..d[1] {
                for x in 0..d[0] {
                    let mut c = [x, y, z];
                    c[axis] = d[axis] - 1 - c[axis];
                    f[x + d[0] * (y + d[1] * z)] = mb[c[0] + d[0] * (c[1] + d[1] * c[2])];
                }
            }
        }
        println!("flip axis {axis}: {:.3}", ncc(&ma, &f));
    }
}
