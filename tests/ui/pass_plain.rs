//! `#[derive(Plain)]` on the structs it accepts, under strict lints, and their values
//! in shared memory.
#![deny(warnings, unused_qualifications, unsafe_code)]

use multiproc::{Array, Plain, Value};

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(C)]
struct Flags(u32, bool, bool, u8, u8, char);

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(C, align(16))]
struct Aligned {
    words: [u64; 2],
    corner: Point,
}

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(transparent)]
struct Meters(f32);

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[repr(C)]
struct Empty {}

/// Where a crate that renamed multiproc re-exports it.
mod reexport {
    pub use multiproc as mp;
}

/// Names the crate by another path, as a string or a bare path.
#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[plain(crate = "crate::reexport::mp")]
#[repr(C)]
struct Renamed {
    n: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Plain)]
#[plain(crate = reexport::mp)]
#[repr(transparent)]
struct RenamedBare(u64);

fn main() -> multiproc::Result<()> {
    let p = Value::new(Point { x: 1.0, y: 2.0 })?;
    assert_eq!(p.get().y, 2.0);
    let f = Array::from_slice(&[Flags(1, true, false, 3, 4, 'z'); 2])?;
    assert_eq!(f.get(1)?, Flags(1, true, false, 3, 4, 'z'));
    let a = Value::new(Aligned {
        words: [1, 2],
        corner: Point { x: 0.0, y: 0.0 },
    })?;
    assert_eq!(a.get().words, [1, 2]);
    assert_eq!(Value::new(Meters(2.5))?.get(), Meters(2.5));
    assert_eq!(Array::<Empty>::zeroed(3)?.len(), 3);
    assert_eq!(Value::new(Renamed { n: 7 })?.get(), Renamed { n: 7 });
    assert_eq!(Value::new(RenamedBare(8))?.get(), RenamedBare(8));
    Ok(())
}
