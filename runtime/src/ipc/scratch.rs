//! Per-thread scratch buffers that queues and connections encode items into and decode
//! them from, so that a steady stream of items allocates nothing.

use std::cell::RefCell;

/// Scratch buffers above this size are not kept for the next item.
const KEEP_SCRATCH: usize = 8 << 20;

thread_local! {
    pub(crate) static PUT_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static GET_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, emptied (or a fresh one if the scratch
/// is in use further up this thread's stack).
pub(crate) fn with_scratch<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let out = f(&mut buf);
            if buf.capacity() > KEEP_SCRATCH {
                *buf = Vec::new();
            }
            out
        }
        Err(_) => f(&mut Vec::new()),
    })
}
