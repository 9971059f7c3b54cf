//! Writes the seed corpus of every fuzz target: `fuzz/corpus/<target>/<name>`.
//!
//! Run from the repository's root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus`.

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| "fuzz/corpus".into(), std::path::PathBuf::from);
    for (target, name, input) in multiproc_runtime::fuzzing::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), input)?;
    }
    Ok(())
}
