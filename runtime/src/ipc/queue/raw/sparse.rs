//! The memory of a new queue's ring: a sparse one that can grow (`grow.rs`) for an
//! unbounded queue, a fixed one otherwise, and the check of a received queue's.

use std::io;
use std::time::Duration;

use crate::ipc::ring::{self, MAX_RING};
use crate::os::shm::{SharedRegion, sparse_budget};

use super::layout::{DATA_OFFSET, Flavor};

/// How long a `put` about to grow the ring waits for the consumers to empty and
/// rewind it instead (once per lap: then it grows).
pub(super) const GROW_WAIT: Duration = Duration::from_millis(10);

/// The data area of a new queue.
pub(super) struct Area {
    pub(super) region: SharedRegion,
    /// The whole data area (the virtual size, for a growable ring).
    pub(super) ring_size: usize,
    /// The part that stays in memory: `ring_size` for a fixed ring.
    pub(super) resident: usize,
}

/// The region of a new queue whose ring keeps `resident` bytes in memory: a
/// growable one of up to `virtual_size` bytes (at most what the machine's memory and
/// any address space limit allow; halved on failure), or a fixed one of `resident`
/// bytes if `virtual_size` is not larger than it or no larger region can be made.
pub(super) fn create(flavor: Flavor, resident: usize, virtual_size: usize) -> io::Result<Area> {
    let resident = ring::ring_size_for(resident);
    let mut size = if virtual_size > resident {
        let budget = sparse_budget().saturating_sub(DATA_OFFSET);
        virtual_size.min(MAX_RING).min(budget)
    } else {
        0
    };
    if !size.is_power_of_two() {
        size = size.checked_next_power_of_two().map_or(MAX_RING, |p| p / 2);
    }
    while size > resident {
        match SharedRegion::new(flavor.name(), DATA_OFFSET + size) {
            Ok(region) => {
                return Ok(Area {
                    region,
                    ring_size: size,
                    resident,
                });
            }
            Err(e) => {
                log::debug!("no sparse queue ring of {size} bytes ({e}); trying half of it");
                size /= 2;
            }
        }
    }
    Ok(Area {
        region: SharedRegion::new(flavor.name(), DATA_OFFSET + resident)?,
        ring_size: resident,
        resident,
    })
}

/// The resident part of a received queue's ring, as its header says (0: fixed),
/// if it is one this crate makes.
pub(super) fn resident_from(stored: u64, ring_size: usize) -> Option<usize> {
    if stored == 0 {
        return Some(ring_size);
    }
    let resident = usize::try_from(stored).ok()?;
    (resident.is_power_of_two() && (ring::MIN_RING..ring_size).contains(&resident))
        .then_some(resident)
}
