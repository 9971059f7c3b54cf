use multiproc::Plain;

#[derive(Clone, Copy, Plain)]
#[plain(krate = "multiproc")]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
