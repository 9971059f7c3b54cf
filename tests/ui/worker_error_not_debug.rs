struct ParseError {
    line: usize,
}

type Parsed<T> = Result<T, ParseError>;

#[multiproc::worker]
fn parse(text: String) -> Parsed<u32> {
    text.parse().map_err(|_| ParseError { line: 1 })
}

fn main() {}
