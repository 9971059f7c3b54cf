use multiproc::Run;

struct Connection {
    fd: i32,
}

#[multiproc::process]
struct Server {
    port: u16,
    connection: Connection,
}

impl Run for Server {
    fn run(&mut self) {
        println!("{} {}", self.port, self.connection.fd);
    }
}

fn main() {}
