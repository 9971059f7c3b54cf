#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Log {
    lines: Vec<String>,
}

#[multiproc::managed]
impl Log {
    pub fn add(&mut self, line: &str) {
        self.lines.push(line.to_owned());
    }
}

fn main() {}
