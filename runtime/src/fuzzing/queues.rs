//! Targets of the data path of queues and connections, which every holder can write:
//! the descriptor courier and the records of a shared-memory ring.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::{Input, descriptors, open_descriptors};
use crate::ipc::ring::{self, Ring, RingControl, Word};
use crate::wire::courier::{Courier, Taken};

/// The descriptor courier of a queue (`Courier::take`), against a model of what it
/// promises: batches come out in order; a batch older than the one wanted, or a packet
/// no multiproc process sent, is dropped on the way; a batch ahead (by at most 2^32)
/// stays for its own record and the wanted one is lost.
///
/// The input is a script: packets sent by producers (genuine batches, or any bytes,
/// with or without descriptors), and takes.
pub fn courier(data: &[u8]) {
    /// The model's packet: a batch's number, or garbage; and its descriptor count.
    enum Packet {
        Batch(u64),
        Garbage,
    }
    let before = open_descriptors();
    {
        let courier = Courier::new().expect("a socket pair");
        let mut model: VecDeque<(Packet, usize)> = VecDeque::new();
        let mut input = Input(data);
        let base = input.u64();
        while !input.is_empty() {
            let op = input.byte();
            match op % 4 {
                // A genuine batch.
                0 | 1 => {
                    let seq = base.wrapping_add(u64::from(input.byte()));
                    let fds = descriptors(1 + usize::from(op >> 2) % 3);
                    match courier.send(seq, &fds) {
                        Ok(()) => model.push_back((Packet::Batch(seq), fds.len())),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("cannot send a batch: {e}"),
                    }
                }
                // Anything at all.
                2 => {
                    let len = usize::from(input.byte() % 20);
                    let bytes = input.bytes(len);
                    let fds = descriptors(usize::from(op >> 2) % 3);
                    match courier.inject(bytes, &fds) {
                        Ok(()) => {
                            let packet = match <[u8; 8]>::try_from(bytes) {
                                Ok(b) => Packet::Batch(u64::from_le_bytes(b)),
                                Err(_) => Packet::Garbage,
                            };
                            model.push_back((packet, fds.len()));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("cannot send a packet: {e}"),
                    }
                }
                // A consumer takes a batch.
                _ => {
                    let seq = if op & 4 == 0 {
                        base.wrapping_add(u64::from(input.byte()))
                    } else {
                        input.u64()
                    };
                    let expected = loop {
                        let ahead = match model.front() {
                            None => break None,
                            Some((Packet::Batch(next), _)) => next.wrapping_sub(seq) as i64,
                            Some((Packet::Garbage, _)) => i64::MIN,
                        };
                        if (1..=1i64 << 32).contains(&ahead) {
                            break None;
                        }
                        let (_, fds) = model.pop_front().expect("a front");
                        if ahead == 0 {
                            break Some(fds);
                        }
                    };
                    match courier
                        .take(seq)
                        .expect("take never fails on a live courier")
                    {
                        Taken::Batch(fds) => assert_eq!(Some(fds.len()), expected),
                        Taken::Lost => assert_eq!(None, expected),
                    }
                }
            }
        }
    }
    assert_eq!(open_descriptors(), before, "descriptors leaked");
}

/// Records of a shared-memory ring (`Ring::header`, `Ring::read_payload`), the
/// data path of queues and connections, whose memory every holder can write.
///
/// The first byte picks a genuine ring or a hostile one. A genuine ring is written
/// by `Ring::write` with payloads from the input and read back: every record must
/// come back whole and in order. A hostile ring has its words and data area taken
/// from the input: reading it must stop at an error or the end, never reading out of
/// bounds (AddressSanitizer watches the copies) nor returning a payload longer than
/// the ring.
pub fn ring(data: &[u8]) {
    const SIZE: usize = 4096;
    let mut input = Input(data);
    let genuine = input.byte() & 1 == 0;
    let ctl = RingControl::default();
    let mut area = vec![0u8; SIZE];
    if !genuine {
        ctl.head.word.store(input.u64(), Ordering::Relaxed);
        ctl.tail.word.store(input.u64(), Ordering::Relaxed);
        let bytes = input.bytes(SIZE);
        area[..bytes.len()].copy_from_slice(bytes);
    }
    // SAFETY: `area` is SIZE bytes, a power of two within the bounds, and outlives
    // `ring`; this thread alone uses it.
    let ring = unsafe { Ring::new(&ctl, area.as_mut_ptr(), SIZE) };
    let mut expected = VecDeque::new();
    let mut out = Vec::new();
    let mut head = Word(ctl.head.word.load(Ordering::Relaxed));
    // Each round writes what fits (genuine) and reads one record: enough rounds to
    // write every record of the input and read them all.
    for _ in 0..data.len() + SIZE / 16 + 2 {
        if genuine {
            while !input.is_empty() {
                let len = usize::from(input.byte()) * 7;
                let Some(need) = ring::record_bytes(len) else {
                    break;
                };
                let tail = Word(ctl.tail.word.load(Ordering::Relaxed));
                if ring.free(tail, need).expect("a genuine ring") < need {
                    break;
                }
                let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ input.0.len() as u8).collect();
                let seq = u64::from(tail.count());
                ring.publish(ring.write(tail, 1, seq, &payload));
                expected.push_back((seq, payload));
            }
        }
        let tail = ring.tail(head);
        match ring.header(head, tail, |k| k == 1) {
            Ok(Some(header)) => {
                out.clear();
                ring.read_payload(head, &header, &mut out);
                assert_eq!(out.len(), header.len as usize);
                assert!(out.len() <= SIZE);
                if genuine {
                    let (seq, payload) = expected.pop_front().expect("a record was written");
                    assert_eq!((header.seq, &out), (seq, &payload));
                }
                head = Ring::after(head, &header);
                ring.release(head);
            }
            Ok(None) if genuine && !input.is_empty() => {}
            Ok(None) => break,
            Err(corrupt) => {
                assert!(!genuine, "a genuine ring is corrupt: {}", corrupt.0);
                break;
            }
        }
    }
    if genuine && input.is_empty() {
        assert!(
            expected.is_empty(),
            "{} records never came back",
            expected.len()
        );
    }
}
