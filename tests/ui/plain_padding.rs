#[derive(Clone, Copy, multiproc::Plain)]
#[repr(C)]
struct Padded {
    small: u8,
    large: u64,
}

fn main() {}
