//! TCP through io_uring for the gateway thread: a multishot accept on the listening socket, a
//! multishot receive per connection into buffers the kernel picks from a registered buffer ring,
//! and one send in flight per connection. No thread, no blocking call, no allocation per message:
//! the owner calls [`Net::poll`] in its duty cycle and gets [`NetEvent`]s.
//!
//! Connection slots are the gateway core's [`crate::ConnectionId`]s: the owner asks the core
//! for one when a connection is accepted and hands it to [`Net::adopt`].
#![allow(unsafe_code)]

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Buffers in the receive ring (a power of two).
pub const RECV_BUFFERS: u16 = 256;
/// Bytes of each receive buffer.
pub const RECV_BUFFER_LEN: usize = 16 << 10;
/// Bytes one send may carry; the rest of the outbound bytes wait for its completion.
pub const SEND_BUFFER_LEN: usize = 64 << 10;
const BUFFER_GROUP: u16 = 7;
const RING_ENTRIES: u32 = 1024;

const TAG_ACCEPT: u64 = 1;
const TAG_RECV: u64 = 2;
const TAG_SEND: u64 = 3;

fn user_data(tag: u64, generation: u32, slot: u32) -> u64 {
    (tag << 60) | ((generation as u64 & 0x0FFF_FFFF) << 32) | slot as u64
}

fn split_user_data(data: u64) -> (u64, u32, u32) {
    (data >> 60, ((data >> 32) & 0x0FFF_FFFF) as u32, data as u32)
}

/// Something that happened on the network.
#[derive(Debug)]
pub enum NetEvent<'a> {
    /// A connection was accepted: adopt it with [`Net::adopt`] or refuse it with
    /// [`Net::refuse`].
    Accepted {
        /// The connection's socket.
        fd: RawFd,
    },
    /// Bytes arrived on a connection.
    Received {
        /// The connection.
        slot: u32,
        /// What arrived (valid until the next event).
        bytes: &'a [u8],
    },
    /// The connection ended (the peer closed it, an error, or [`Net::close`] finished): the
    /// slot is free again.
    Closed {
        /// The connection.
        slot: u32,
    },
}

/// What the network layer counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Connections adopted.
    pub accepted: u64,
    /// Connections refused (no free slot).
    pub refused: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Send operations submitted.
    pub sends: u64,
    /// Receives re-armed because the buffer ring ran dry (the kernel waits for buffers).
    pub recv_rearms: u64,
    /// Failed operations (the connection is closed).
    pub errors: u64,
}

struct Slot {
    fd: RawFd,
    generation: u32,
    open: bool,
    /// The multishot receive is armed.
    receiving: bool,
    /// close() was asked for: no more sends; the socket is shut down.
    closing: bool,
    send: Box<[u8]>,
    send_length: usize,
    send_offset: usize,
    sending: bool,
}

/// The page-aligned memory of the buffer ring's entries.
struct RingMemory {
    base: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `Net::bind` with this layout.
        unsafe { std::alloc::dealloc(self.base.cast(), self.layout) }
    }
}

/// The gateway's TCP acceptor and connections over one io_uring.
pub struct Net {
    ring: IoUring,
    listener: TcpListener,
    slots: Vec<Slot>,
    ring_memory: RingMemory,
    buffers: Box<[u8]>,
    /// Local copy of the buffer ring's tail.
    tail: u16,
    /// What the network layer counted.
    pub counters: NetCounters,
}

impl Net {
    /// Binds `address` and prepares `slots` connection slots. Fails clearly when io_uring (or
    /// its provided-buffer rings, Linux 5.19+, and multishot receive, Linux 6.0+) is not
    /// available.
    pub fn bind(address: SocketAddr, slots: usize) -> io::Result<Net> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("io_uring is unavailable ({e}); the gateway needs it for its sockets"),
            )
        })?;
        let listener = TcpListener::bind(address)?;
        let entries = RECV_BUFFERS as usize;
        let layout = std::alloc::Layout::from_size_align(
            entries * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .expect("valid layout");
        // SAFETY: non-zero size; zeroed memory is a valid (empty) ring.
        let base = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if base.is_null() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring"));
        }
        let ring_memory = RingMemory { base, layout };
        let buffers = vec![0u8; entries * RECV_BUFFER_LEN].into_boxed_slice();
        // SAFETY: the ring memory is page aligned, lives as long as `Net` (the ring is dropped
        // before it: fields drop in declaration order) and is only written through `recycle`.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(base as u64, RECV_BUFFERS, BUFFER_GROUP, 0)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("io_uring provided-buffer rings are unavailable ({e}): Linux 5.19 or later is needed"),
                    )
                })?;
        }
        let mut net = Net {
            ring,
            listener,
            slots: (0..slots)
                .map(|_| Slot {
                    fd: -1,
                    generation: 0,
                    open: false,
                    receiving: false,
                    closing: false,
                    send: vec![0u8; SEND_BUFFER_LEN].into_boxed_slice(),
                    send_length: 0,
                    send_offset: 0,
                    sending: false,
                })
                .collect(),
            ring_memory,
            buffers,
            tail: 0,
            counters: NetCounters::default(),
        };
        for bid in 0..RECV_BUFFERS {
            net.recycle(bid);
        }
        net.arm_accept()?;
        Ok(net)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn recycle(&mut self, bid: u16) {
        let mask = RECV_BUFFERS - 1;
        let index = (self.tail & mask) as usize;
        // SAFETY: index < RECV_BUFFERS entries of the ring memory; the kernel reads entries only
        // below the published tail, and this one is above it until the store below.
        unsafe {
            let entry = &mut *self.ring_memory.base.add(index);
            entry.set_addr(self.buffers.as_ptr().add(bid as usize * RECV_BUFFER_LEN) as u64);
            entry.set_len(RECV_BUFFER_LEN as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field of the first entry, shared with the kernel: published with
        // release ordering after the entry is written.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring_memory.base) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every buffer an entry points to (send buffers, the ring's buffers) lives
            // in `self` until its completion arrives, and slots are never freed while an
            // operation on them is in flight.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .build()
            .user_data(user_data(TAG_ACCEPT, 0, 0));
        self.push(entry)
    }

    fn arm_recv(&mut self, slot: u32) -> io::Result<()> {
        let s = &mut self.slots[slot as usize];
        s.receiving = true;
        let entry = opcode::RecvMulti::new(types::Fd(s.fd), BUFFER_GROUP)
            .build()
            .user_data(user_data(TAG_RECV, s.generation, slot));
        self.push(entry)
    }

    /// Takes an accepted connection into `slot` (free: never adopted, or reported Closed).
    pub fn adopt(&mut self, slot: u32, fd: RawFd) -> io::Result<()> {
        let s = &mut self.slots[slot as usize];
        assert!(!s.open, "slot {slot} is in use");
        s.fd = fd;
        s.generation = s.generation.wrapping_add(1);
        s.open = true;
        s.closing = false;
        s.send_length = 0;
        s.send_offset = 0;
        s.sending = false;
        // Small messages go out at once.
        let one: libc::c_int = 1;
        // SAFETY: setting an option on our own socket with a valid pointer and length.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        self.counters.accepted += 1;
        self.arm_recv(slot)
    }

    /// Closes an accepted connection that no slot takes.
    pub fn refuse(&mut self, fd: RawFd) {
        self.counters.refused += 1;
        // SAFETY: our own descriptor from accept, not used again.
        unsafe {
            libc::close(fd);
        }
    }

    /// Whether `slot` can take bytes to send now (open, not closing, no send in flight).
    pub fn can_send(&self, slot: u32) -> bool {
        let s = &self.slots[slot as usize];
        s.open && !s.closing && !s.sending
    }

    /// Whether a send is in flight on `slot`.
    pub fn sending(&self, slot: u32) -> bool {
        self.slots[slot as usize].sending
    }

    /// Sends up to [`SEND_BUFFER_LEN`] bytes of `bytes` (copied); returns how many were taken.
    /// Only when [`Net::can_send`].
    pub fn send(&mut self, slot: u32, bytes: &[u8]) -> io::Result<usize> {
        let s = &mut self.slots[slot as usize];
        debug_assert!(s.open && !s.closing && !s.sending);
        let count = bytes.len().min(SEND_BUFFER_LEN);
        if count == 0 {
            return Ok(0);
        }
        s.send[..count].copy_from_slice(&bytes[..count]);
        s.send_length = count;
        s.send_offset = 0;
        self.submit_send(slot)?;
        Ok(count)
    }

    fn submit_send(&mut self, slot: u32) -> io::Result<()> {
        let s = &mut self.slots[slot as usize];
        s.sending = true;
        let pending = &s.send[s.send_offset..s.send_length];
        let entry = opcode::Send::new(types::Fd(s.fd), pending.as_ptr(), pending.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(TAG_SEND, s.generation, slot));
        self.counters.sends += 1;
        self.push(entry)
    }

    /// Closes `slot`: once the send in flight completes the socket is shut down; the receive
    /// then ends and [`NetEvent::Closed`] reports the slot free.
    pub fn close(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if !s.open || s.closing {
            return;
        }
        s.closing = true;
        if !s.sending {
            // SAFETY: our own open socket.
            unsafe {
                libc::shutdown(s.fd, libc::SHUT_RDWR);
            }
        }
    }

    /// Submits what is queued and hands every completion's event to `handle`; returns the
    /// completions seen.
    pub fn poll(&mut self, handle: &mut dyn FnMut(NetEvent)) -> io::Result<usize> {
        self.ring.submit()?;
        let mut seen = 0;
        loop {
            let Some(completion) = self.ring.completion().next() else {
                break;
            };
            seen += 1;
            self.complete(completion, handle)?;
        }
        Ok(seen)
    }

    fn complete(
        &mut self,
        completion: cqueue::Entry,
        handle: &mut dyn FnMut(NetEvent),
    ) -> io::Result<()> {
        let (tag, generation, slot) = split_user_data(completion.user_data());
        let result = completion.result();
        let flags = completion.flags();
        match tag {
            TAG_ACCEPT => {
                if result >= 0 {
                    handle(NetEvent::Accepted { fd: result });
                } else {
                    self.counters.errors += 1;
                }
                if !cqueue::more(flags) {
                    self.arm_accept()?;
                }
            }
            TAG_RECV => {
                let bid = cqueue::buffer_select(flags);
                let current = self
                    .slots
                    .get(slot as usize)
                    .is_some_and(|s| s.open && s.generation == generation);
                if let Some(bid) = bid {
                    if result > 0 && current {
                        let start = bid as usize * RECV_BUFFER_LEN;
                        self.counters.bytes_received += result as u64;
                        handle(NetEvent::Received {
                            slot,
                            bytes: &self.buffers[start..start + result as usize],
                        });
                    }
                    self.recycle(bid);
                }
                if !current || cqueue::more(flags) {
                    return Ok(());
                }
                self.slots[slot as usize].receiving = false;
                if result == -libc::ENOBUFS && !self.slots[slot as usize].closing {
                    // The ring ran dry: the buffers just handed back make room.
                    self.counters.recv_rearms += 1;
                    return self.arm_recv(slot);
                }
                if result > 0 && !self.slots[slot as usize].closing {
                    return self.arm_recv(slot);
                }
                if result < 0 && result != -libc::ECONNRESET && result != -libc::ECANCELED {
                    self.counters.errors += 1;
                }
                self.finish(slot, handle);
            }
            TAG_SEND => {
                let Some(s) = self.slots.get_mut(slot as usize) else {
                    return Ok(());
                };
                if !s.open || s.generation != generation {
                    return Ok(());
                }
                s.sending = false;
                if result < 0 {
                    self.counters.errors += 1;
                    s.closing = true;
                    // SAFETY: our own open socket; the receive ends and reports Closed.
                    unsafe {
                        libc::shutdown(s.fd, libc::SHUT_RDWR);
                    }
                    return Ok(());
                }
                self.counters.bytes_sent += result as u64;
                s.send_offset += result as usize;
                if s.send_offset < s.send_length {
                    return self.submit_send(slot);
                }
                if s.closing {
                    // SAFETY: as above.
                    unsafe {
                        libc::shutdown(s.fd, libc::SHUT_RDWR);
                    }
                }
            }
            _ => self.counters.errors += 1,
        }
        Ok(())
    }

    /// The receive has ended: once no send is in flight the descriptor is closed and the slot
    /// reported free.
    fn finish(&mut self, slot: u32, handle: &mut dyn FnMut(NetEvent)) {
        let s = &mut self.slots[slot as usize];
        if s.sending {
            // The send's completion comes first (it fails on a shut socket); shut it down so it
            // does, then this slot is finished on a later poll.
            s.closing = true;
            // SAFETY: our own open socket.
            unsafe {
                libc::shutdown(s.fd, libc::SHUT_RDWR);
            }
            s.sending = false;
        }
        // SAFETY: our own descriptor; the in-flight receive has ended. A send still in flight
        // fails with EBADF and its completion is ignored (the generation moves on at adopt).
        unsafe {
            libc::close(s.fd);
        }
        s.open = false;
        s.fd = -1;
        handle(NetEvent::Closed { slot });
    }

    /// Closes every connection and the listener (at shutdown).
    pub fn shutdown(mut self) {
        for s in self.slots.iter_mut().filter(|s| s.open) {
            // SAFETY: our own descriptors.
            unsafe {
                libc::close(s.fd);
            }
            s.open = false;
        }
    }
}
