struct Report {
    lines: usize,
}

#[multiproc::worker]
fn count(text: String) -> Report {
    Report {
        lines: text.lines().count(),
    }
}

fn main() {}
