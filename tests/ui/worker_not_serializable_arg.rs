struct Config {
    threads: usize,
}

#[multiproc::worker]
fn start(config: Config) -> usize {
    config.threads
}

fn main() {}
