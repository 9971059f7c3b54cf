//! The ring on private memory: records wrapping around, garbage refused, sizes.

use super::*;

/// A ring in private memory: the data area is 16-byte blocks, so it is aligned as
/// a ring's must be.
struct Owned {
    ctl: Box<RingControl>,
    data: Vec<u128>,
}

impl Owned {
    fn new(size: usize) -> Owned {
        Owned {
            ctl: Box::default(),
            data: vec![0; size / 16],
        }
    }

    fn ring(&mut self) -> Ring<'_> {
        let size = self.data.len() * 16;
        // SAFETY: the vector is `size` bytes, a power of two, aligned to 16, and
        // outlives the ring.
        unsafe { Ring::new(&self.ctl, self.data.as_mut_ptr().cast(), size) }
    }
}

fn push(ring: &Ring<'_>, payload: &[u8]) -> bool {
    let tail = Word(ring.ctl.tail.word.load(Ordering::Relaxed));
    let need = record_bytes(payload.len()).unwrap();
    if ring.free(tail, need).unwrap() < need {
        return false;
    }
    let next = ring.write(tail, 1, 7, payload);
    ring.publish(next);
    true
}

fn pop(ring: &Ring<'_>) -> Option<Vec<u8>> {
    let head = Word(ring.ctl.head.word.load(Ordering::Relaxed));
    let tail = ring.tail(head);
    let header = ring.header(head, tail, |k| k == 1).unwrap()?;
    assert_eq!(header.seq, 7);
    let mut out = Vec::new();
    ring.read_payload(head, &header, &mut out);
    ring.release(Ring::after(head, &header));
    Some(out)
}

#[test]
fn records_wrap_around() {
    let mut owned = Owned::new(4096);
    let ring = owned.ring();
    let mut expected = std::collections::VecDeque::new();
    for i in 0..10_000usize {
        let payload: Vec<u8> = (0..(i * 37) % 1500).map(|j| (i + j) as u8).collect();
        while !push(&ring, &payload) {
            assert_eq!(pop(&ring), expected.pop_front());
        }
        expected.push_back(payload);
    }
    while let Some(got) = pop(&ring) {
        assert_eq!(Some(got), expected.pop_front());
    }
    assert!(expected.is_empty());
    let head = Word(ring.ctl.head.word.load(Ordering::Relaxed));
    let tail = Word(ring.ctl.tail.word.load(Ordering::Relaxed));
    assert_eq!(Ring::items(head, tail), 0);
    assert_eq!(tail.count(), 10_000);
}

#[test]
fn garbage_is_reported_not_trusted() {
    let mut owned = Owned::new(4096);
    {
        let ring = owned.ring();
        assert!(push(&ring, b"hello"));
    }
    // A length far beyond the ring.
    let mut block = owned.data[0].to_ne_bytes();
    block[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    owned.data[0] = u128::from_ne_bytes(block);
    let ring = owned.ring();
    let head = Word(0);
    let tail = ring.fresh_tail();
    assert!(ring.header(head, tail, |_| true).is_err());
    // Positions too far apart.
    assert!(ring.used(Word(0), Word::new(0, 8192)).is_err());
    // Not aligned.
    assert!(ring.used(Word(0), Word::new(0, 8)).is_err());
    // An unknown kind.
    let mut owned = Owned::new(4096);
    let ring = owned.ring();
    assert!(push(&ring, b"x"));
    let tail = ring.fresh_tail();
    assert!(ring.header(Word(0), tail, |k| k == 2).is_err());
}

#[test]
fn sizes() {
    assert_eq!(record_bytes(0), Some(16));
    assert_eq!(record_bytes(1), Some(32));
    assert_eq!(record_bytes(16), Some(32));
    assert_eq!(record_bytes(17), Some(48));
    assert_eq!(record_bytes(usize::MAX), None);
    assert_eq!(ring_size_for(0), MIN_RING);
    assert_eq!(ring_size_for(5000), 8192);
    assert_eq!(ring_size_for(usize::MAX), MAX_RING);
}
