//! Workers work in a release build with `lto = "fat"` and one codegen unit, where the
//! linker is most eager to drop or reorder the registrations and the dispatching
//! constructor: the examples are built that way (in their own target directory) and
//! run.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn examples_work_in_a_fat_lto_release_build() {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = manifest_dir.join("target").join("lto-check");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&manifest_dir)
        .args([
            "build",
            "--release",
            "--offline",
            "--example",
            "basic",
            "--example",
            "library_worker",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(built.success(), "the fat-LTO build failed");
    for (name, expected) in [
        ("basic", "basic: all children joined"),
        (
            "library_worker",
            "library_worker: 6 x 7 = 42, computed in a child; from-a-library said hello",
        ),
    ] {
        let exe = target_dir.join("release").join("examples").join(name);
        let out = Command::new(&exe).output().expect("the example runs");
        assert!(out.status.success(), "{name}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(expected), "{name}: {stdout}");
    }
}
