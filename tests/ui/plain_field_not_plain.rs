#[derive(Clone, Copy, multiproc::Plain)]
#[repr(C)]
struct Named {
    id: u64,
    name: &'static str,
}

fn main() {}
