//! Frames between threads of one process, over real sockets.

use super::*;
use std::io::Write;
use std::os::unix::net::UnixStream;

fn pipe_fd() -> OwnedFd {
    nix::unistd::pipe().unwrap().0
}

#[test]
fn frames_and_descriptors_round_trip() {
    let (a, b) = UnixStream::pair().unwrap();
    send_frame(a.as_fd(), &[b"one"], &[]).unwrap();
    send_frame(a.as_fd(), &[b"tw", b"o"], &[pipe_fd(), pipe_fd()]).unwrap();
    send_frame(a.as_fd(), &[], &[]).unwrap();
    send_frame(a.as_fd(), &[b"four"], &[pipe_fd()]).unwrap();
    drop(a);
    let mut reader = FrameReader::default();
    let mut got = Vec::new();
    while let Some(frame) = reader.read_frame(b.as_fd(), None).unwrap() {
        got.push((frame.bytes.into_vec(), frame.fds.len()));
    }
    assert_eq!(
        got,
        vec![
            (b"one".to_vec(), 0),
            (b"two".to_vec(), 2),
            (Vec::new(), 0),
            (b"four".to_vec(), 1)
        ]
    );
}

#[test]
fn a_large_frame_arrives_whole() {
    let (a, b) = UnixStream::pair().unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let expected = big.clone();
    let writer = std::thread::spawn(move || {
        send_frame(a.as_fd(), &[&big], &[pipe_fd()]).unwrap();
    });
    let frame = FrameReader::default()
        .read_frame(b.as_fd(), None)
        .unwrap()
        .unwrap();
    writer.join().unwrap();
    assert_eq!(frame.bytes, expected);
    assert_eq!(frame.fds.len(), 1);
}

#[test]
fn truncated_and_oversized_frames_are_errors() {
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&10u32.to_le_bytes()).unwrap();
    a.write_all(b"short").unwrap();
    drop(a);
    match FrameReader::default().read_frame(b.as_fd(), None) {
        Err(FrameError::Codec(e)) => assert_eq!(e.kind(), CodecErrorKind::Truncated),
        other => panic!("unexpected {other:?}"),
    }
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(&u32::MAX.to_le_bytes()).unwrap();
    match FrameReader::default().read_frame(b.as_fd(), None) {
        Err(FrameError::Codec(e)) => assert_eq!(e.kind(), CodecErrorKind::Oversized),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_claimed_length_does_not_size_the_buffer() {
    let (mut a, b) = UnixStream::pair().unwrap();
    // A header announcing 512 MiB, then 10 bytes of it.
    a.write_all(&(512u32 << 20).to_le_bytes()).unwrap();
    a.write_all(b"0123456789").unwrap();
    for mut reader in [FrameReader::default(), FrameReader::exact()] {
        while reader.pending() < 14 {
            reader.fill(b.as_fd()).unwrap();
            assert!(
                reader.buffer_len() <= 128 << 10,
                "{} bytes",
                reader.buffer_len()
            );
        }
        assert!(reader.next_frame().unwrap().is_none());
        // Later bytes go to a second reader: put them back for it.
        a.write_all(&(512u32 << 20).to_le_bytes()).unwrap();
        a.write_all(b"0123456789").unwrap();
    }
    // Growing by what arrived still gets a large frame across.
    let (a, b) = UnixStream::pair().unwrap();
    let big = vec![5u8; 5 << 20];
    let writer = std::thread::spawn(move || send_frame(a.as_fd(), &[&big], &[]).unwrap());
    let mut reader = FrameReader::default();
    let frame = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
    writer.join().unwrap();
    assert_eq!(frame.bytes.len(), 5 << 20);
    assert!(frame.bytes.iter().all(|&x| x == 5));
}

#[test]
fn descriptors_in_the_middle_of_a_frame_are_an_error() {
    let (a, b) = UnixStream::pair().unwrap();
    // A header announcing 8 bytes, then 4 of them with a descriptor attached.
    let fd = pipe_fd();
    sendmsg::<()>(
        a.as_raw_fd(),
        &[IoSlice::new(&8u32.to_le_bytes())],
        &[],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let mut reader = FrameReader::default();
    reader.fill(b.as_fd()).unwrap();
    sendmsg::<()>(
        a.as_raw_fd(),
        &[IoSlice::new(b"abcd")],
        &[ControlMessage::ScmRights(&[fd.as_raw_fd()])],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    match reader.fill(b.as_fd()) {
        Err(FrameError::Codec(e)) => assert!(e.to_string().contains("middle"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn exact_reads_leave_later_frames_in_the_socket() {
    let (a, b) = UnixStream::pair().unwrap();
    send_frame(a.as_fd(), &[b"first"], &[]).unwrap();
    send_frame(a.as_fd(), &[], &[]).unwrap();
    send_frame(a.as_fd(), &[b"third"], &[pipe_fd()]).unwrap();
    let mut reader = FrameReader::exact();
    assert_eq!(
        reader.read_frame(b.as_fd(), None).unwrap().unwrap().bytes,
        b"first"
    );
    assert_eq!(reader.pending(), 0);
    // A second reader of the same socket sees the rest, descriptors included.
    let mut other = FrameReader::exact();
    assert!(
        other
            .read_frame(b.as_fd(), None)
            .unwrap()
            .unwrap()
            .bytes
            .is_empty()
    );
    let third = other.read_frame(b.as_fd(), None).unwrap().unwrap();
    assert_eq!((&*third.bytes, third.fds.len()), (&b"third"[..], 1));
    // The length of a frame is known once its header arrived.
    let mut a = a;
    std::io::Write::write_all(&mut a, &7u32.to_le_bytes()).unwrap();
    b.set_nonblocking(true).unwrap();
    assert!(reader.pending_len().is_none());
    reader.fill(b.as_fd()).unwrap();
    assert_eq!(reader.pending_len().unwrap().unwrap(), 7);
}

#[test]
fn a_large_frame_travels_sealed_with_its_descriptors() {
    let (a, b) = UnixStream::pair().unwrap();
    let big: Vec<u8> = (0..SEAL_ABOVE as u32 + 7)
        .map(|i| (i % 251) as u8)
        .collect();
    let sent = big.clone();
    // A thread: were the frame not sealed, it would not fit the socket's buffer.
    let writer = std::thread::spawn(move || {
        send_frame(a.as_fd(), &[b"head", &sent], &[pipe_fd(), pipe_fd()]).unwrap();
        send_frame(a.as_fd(), &[b"small"], &[]).unwrap();
    });
    let mut reader = FrameReader::exact();
    let frame = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
    assert!(frame.bytes.is_sealed());
    assert_eq!(frame.bytes.len(), big.len() + 4);
    assert_eq!(&frame.bytes[..4], b"head");
    assert!(frame.bytes[4..] == big[..]);
    // The value's descriptors, without the memfd.
    assert_eq!(frame.fds.len(), 2);
    let next = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
    assert!(!next.bytes.is_sealed());
    assert_eq!(next.bytes, b"small");
    writer.join().unwrap();
}

#[test]
fn a_large_frame_over_tcp_travels_whole() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    let big = vec![9u8; SEAL_ABOVE + 1];
    let writer = std::thread::spawn(move || send_frame(a.as_fd(), &[&big], &[]).unwrap());
    let frame = FrameReader::default()
        .read_frame(b.as_fd(), None)
        .unwrap()
        .unwrap();
    writer.join().unwrap();
    assert!(!frame.bytes.is_sealed());
    assert_eq!(frame.bytes.len(), SEAL_ABOVE + 1);
    assert!(frame.bytes.iter().all(|&x| x == 9));
}

#[test]
fn an_encoded_sealed_message_goes_as_it_is_on_unix_and_read_back_on_tcp() {
    let value = (3u8, vec![5u8; SEAL_ABOVE]);
    let expected = [&[1u8][..], &codec::encode(&value).unwrap().bytes].concat();
    let message = codec::encode_message(&[1], &value).unwrap();
    assert!(message.sealed.is_some() && message.bytes.is_empty());
    // Unix: the memfd itself, twice (the message keeps its own).
    let (a, b) = UnixStream::pair().unwrap();
    let mut reader = FrameReader::exact();
    for _ in 0..2 {
        send_encoded(a.as_fd(), &message).unwrap();
        let frame = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
        assert!(frame.bytes.is_sealed() && frame.fds.is_empty());
        assert!(frame.bytes == expected);
    }
    // TCP: read back and sent in the stream.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    let writer = std::thread::spawn(move || send_encoded(a.as_fd(), &message).unwrap());
    let frame = FrameReader::default()
        .read_frame(b.as_fd(), None)
        .unwrap()
        .unwrap();
    writer.join().unwrap();
    assert!(!frame.bytes.is_sealed());
    assert!(frame.bytes == expected);
}

/// Sends a sealed frame's header and `body` with `fds`, as a peer may.
fn send_marked(sock: BorrowedFd<'_>, body: &[u8], fds: &[OwnedFd]) {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let header = codec::sealed_header();
    let iov = [IoSlice::new(&header), IoSlice::new(body)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).unwrap();
}

fn memfd_of(bytes: &[u8], seals: nix::fcntl::SealFlag) -> OwnedFd {
    use std::os::unix::fs::FileExt;
    let fd = crate::os::shm::memfd("test").unwrap();
    std::fs::File::from(fd.try_clone().unwrap())
        .write_all_at(bytes, 0)
        .unwrap();
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_ADD_SEALS(seals)).unwrap();
    fd
}

#[test]
fn bad_sealed_frames_are_errors_and_the_next_frame_is_intact() {
    use nix::fcntl::SealFlag;
    let (a, b) = UnixStream::pair().unwrap();
    let len = |n: u64| n.to_le_bytes();
    let resize = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    let (sock, _peer) = UnixStream::pair().unwrap();
    let cases: Vec<(&str, [u8; 8], Vec<OwnedFd>)> = vec![
        ("without its memfd", len(3), vec![]),
        ("a pipe", len(3), vec![pipe_fd()]),
        ("a socket", len(3), vec![sock.into()]),
        ("not sealed", len(3), vec![memfd_of(b"abc", resize)]),
        (
            "not sealed",
            len(3),
            vec![memfd_of(b"abc", SealFlag::F_SEAL_WRITE)],
        ),
        (
            "announced as 4",
            len(4),
            vec![memfd_of(b"abc", sealed::PAYLOAD_SEALS)],
        ),
        (
            "above the limit",
            len(codec::MAX_MESSAGE_LEN as u64 + 1),
            vec![memfd_of(b"abc", sealed::PAYLOAD_SEALS)],
        ),
        ("empty", len(0), vec![pipe_fd()]),
    ];
    for reader in [FrameReader::default(), FrameReader::exact()] {
        let mut reader = reader;
        for (what, body, fds) in &cases {
            let fds: Vec<OwnedFd> = fds.iter().map(|fd| fd.try_clone().unwrap()).collect();
            send_marked(a.as_fd(), body, &fds);
            send_frame(a.as_fd(), &[b"next"], &[]).unwrap();
            match reader.read_frame(b.as_fd(), None) {
                Err(FrameError::Codec(e)) => assert!(e.to_string().contains(what), "{e}"),
                other => panic!("{what}: unexpected {other:?}"),
            }
            let next = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
            assert_eq!(next.bytes, b"next", "after {what}");
        }
        // A genuine one still arrives.
        let fd = sealed::seal_parts("test", &[b"abc"]).unwrap();
        send_marked(a.as_fd(), &len(3), &[fd]);
        let frame = reader.read_frame(b.as_fd(), None).unwrap().unwrap();
        assert_eq!((&*frame.bytes, frame.fds.len()), (&b"abc"[..], 0));
    }
}

#[test]
fn nonblocking_reads_resume() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut reader = FrameReader::default();
    match reader.fill(b.as_fd()) {
        Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
        other => panic!("unexpected {other:?}"),
    }
    send_frame(a.as_fd(), &[b"late"], &[]).unwrap();
    let frame = reader
        .read_frame(
            b.as_fd(),
            Some(sys::deadline_after(std::time::Duration::from_secs(10))),
        )
        .unwrap()
        .unwrap();
    assert_eq!(frame.bytes, b"late");
}
