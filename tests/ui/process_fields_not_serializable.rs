// One error for each field type that cannot cross, none for a skipped field.
use multiproc::Run;

#[derive(Default)]
struct Connection {
    fd: i32,
}

struct Cache {
    entries: Vec<u8>,
}

#[multiproc::process]
struct Server {
    port: u16,
    connection: Connection,
    cache: Cache,
    #[serde(skip)]
    spare: Connection,
    backup: Connection,
}

impl Run for Server {
    fn run(&mut self) {
        println!("{} {}", self.port, self.connection.fd);
        println!("{} {} {}", self.cache.entries.len(), self.spare.fd, self.backup.fd);
    }
}

fn main() {}
