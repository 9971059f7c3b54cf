#[derive(Clone, Copy, multiproc::Plain)]
#[repr(C)]
struct Pair<T> {
    a: T,
    b: T,
}

fn main() {}
