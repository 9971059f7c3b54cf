struct Report {
    lines: usize,
}

type Fallible<T> = Result<T, String>;

#[multiproc::worker]
fn count(text: String) -> Fallible<Report> {
    Ok(Report {
        lines: text.lines().count(),
    })
}

fn main() {}
