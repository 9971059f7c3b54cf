#[derive(Clone, Copy, multiproc::Plain)]
#[repr(C)]
enum Color {
    Red,
    Green,
}

fn main() {}
