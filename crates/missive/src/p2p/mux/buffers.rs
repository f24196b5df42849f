//! Read buffers for yamux connections, recycled per thread.
//!
//! A connection reads into one buffer and hands each data body out as a slice of it, so the
//! buffer's memory stays taken until the last reader has dropped its slice. Allocating a fresh
//! buffer whenever the last one is still shared made the allocator return and fault the same
//! pages again on every read of a busy stream; instead a few buffers go round a per-thread pool
//! and are taken back once nothing points into them ([`BytesMut::try_reclaim`]). An idle
//! connection gives its buffer back, so it holds none.

use std::cell::RefCell;

use bytes::BytesMut;

/// The size a read buffer is made with.
pub(super) const BUFFER: usize = 256 * 1024;
/// Buffers a thread keeps for its connections.
const POOL: usize = 4;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Makes room for `room` more bytes after what `buf` holds: in place when nothing else points
/// into it, else in a pooled buffer no slice points into any more, else in a new one. Bytes
/// not yet processed move along.
pub(super) fn make_room(buf: &mut BytesMut, room: usize) {
    if buf.capacity() - buf.len() >= room || (buf.capacity() > 0 && buf.try_reclaim(room)) {
        return;
    }
    let want = BUFFER.max(buf.len() + room);
    let mut next = FREE
        .with(|free| {
            let mut free = free.borrow_mut();
            let i = free.iter_mut().position(|b| b.try_reclaim(want))?;
            Some(free.swap_remove(i))
        })
        .unwrap_or_else(|| BytesMut::with_capacity(want));
    next.extend_from_slice(buf);
    let old = std::mem::replace(buf, next);
    give_back(old);
}

/// Returns a buffer to the pool (or drops it when the pool is full); slices of it may still be
/// in use, which only delays its reuse.
pub(super) fn give_back(mut buf: BytesMut) {
    if buf.capacity() == 0 {
        return;
    }
    buf.clear();
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < POOL {
            free.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_once_its_slices_are_gone() {
        let mut buf = BytesMut::new();
        make_room(&mut buf, 100);
        buf.extend_from_slice(&[7u8; 100]);
        let first = buf.as_ptr();
        let body = buf.split_to(60).freeze();
        // Shared: more room than what is left comes from another buffer, with the unread
        // bytes moved along.
        make_room(&mut buf, BUFFER);
        assert_ne!(buf.as_ptr(), first);
        assert_eq!(&buf[..], &[7u8; 40]);
        drop(body);
        // The first buffer is free again and is the one handed out next.
        let mut other = BytesMut::new();
        make_room(&mut other, 1000);
        assert_eq!(other.as_ptr(), first);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_buffers() {
        for _ in 0..POOL + 3 {
            let mut b = BytesMut::new();
            make_room(&mut b, 10);
            give_back(b);
            // Each buffer taken was given back: the pool never holds more than its bound.
            assert!(FREE.with(|f| f.borrow().len()) <= POOL);
        }
        let held: Vec<BytesMut> = (0..POOL + 3)
            .map(|_| {
                let mut b = BytesMut::new();
                make_room(&mut b, 10);
                b
            })
            .collect();
        for b in held {
            give_back(b);
        }
        assert_eq!(FREE.with(|f| f.borrow().len()), POOL);
    }
}
