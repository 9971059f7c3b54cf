// The shapes of struct a #[process] accepts.

use multiproc::{Run, Worker};
use serde::{Deserialize, Serialize};

#[multiproc::process]
struct Empty {}

impl Run for Empty {
    fn run(&mut self) {}
}

/// A struct that derives serde itself: the macro must not derive it twice.
#[multiproc::process]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnSerde {
    some_field: u32,
    #[serde(default)]
    other_field: Option<String>,
}

impl Run for OwnSerde {
    fn run(&mut self) {
        self.some_field += 1;
    }
}

/// Fully qualified derives count too.
#[multiproc::process]
#[derive(serde::Serialize, serde::Deserialize)]
struct QualifiedSerde {
    x: u8,
}

impl Run for QualifiedSerde {
    fn run(&mut self) {}
}

/// Not serializable: only a skipped field may have this type.
#[derive(Debug, Default)]
pub struct Handle {
    id: u64,
}

/// Serde attributes work with the derive the macro adds, on the struct and on fields,
/// and a skipped field need not be serializable.
#[multiproc::process]
#[derive(Debug)]
#[serde(rename_all = "UPPERCASE", deny_unknown_fields)]
pub struct Configured {
    pub name: String,
    #[serde(skip)]
    cache: Vec<u8>,
    #[serde(skip)]
    handle: Option<Handle>,
    #[serde(default, rename = "boundary")]
    limit: u32,
}

impl Run<Result<(), String>> for Configured {
    fn run(&mut self) -> Result<(), String> {
        self.cache.push(1);
        self.limit += self.handle.as_ref().map_or(0, |h| h.id as u32);
        if self.name.is_empty() {
            Err("no name".to_owned())
        } else {
            Ok(())
        }
    }
}

#[multiproc::process(name = "custom::process")]
struct Renamed {
    n: u64,
}

impl Run for Renamed {
    fn run(&mut self) {
        println!("{}", self.n);
    }
}

fn main() {
    #[multiproc::process]
    struct Local {
        n: u32,
    }

    impl Run for Local {
        fn run(&mut self) {
            self.n += 1;
        }
    }

    let _: multiproc::Process = Empty {}.into_process();
    let _: multiproc::Process = OwnSerde {
        some_field: 1,
        other_field: None,
    }
    .clone()
    .into_process();
    let _: multiproc::Process = QualifiedSerde { x: 1 }.into_process();
    let _: multiproc::Process = Configured {
        name: "c".into(),
        cache: Vec::new(),
        handle: Some(Handle { id: 1 }),
        limit: 0,
    }
    .into_process();
    let _: multiproc::Process = Renamed { n: 1 }.into_process();
    let _: multiproc::Process = Local { n: 1 }.into_process();

    assert_eq!(<Renamed as Worker>::KEY, "custom::process");
    assert_eq!(<Empty as Worker>::KEY, concat!(module_path!(), "::Empty"));
    assert_eq!(<Empty as Worker>::KIND, "Empty");
}
