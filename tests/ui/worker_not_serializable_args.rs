// One error for each argument type that cannot cross, none for the others.

struct Config {
    threads: usize,
}

struct Handle {
    id: u64,
}

#[multiproc::worker]
fn start(config: Config, name: String, handle: Handle, backup: Config) -> usize {
    config.threads + name.len() + handle.id as usize + backup.threads
}

fn main() {}
