use std::borrow::Cow;

#[multiproc::worker]
fn shout(text: Cow<'_, str>) -> String {
    text.to_uppercase()
}

fn main() {}
