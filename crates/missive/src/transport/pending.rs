//! Admission of inbound connections that have not finished their handshake (TLS, Noise).
//!
//! Every accepted connection holds a slot in [`Pending`] until its handshake ends. Slots are
//! bounded in total and per remote IP address, and a full table never turns the newcomer
//! away: the least advanced connection yields (one that has sent nothing before one that
//! has), the oldest first. So a flood of sockets that never speak can cost an honest client a
//! retry at worst, never lock it out; and a connection that has not sent its first bytes
//! within a short deadline ([`first_bytes`]) is closed without waiting for the whole
//! handshake deadline. The node, the queue's TLS listener and the rpc TLS accept loop all
//! admit their handshakes here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The table of inbound connections in their handshake.
#[derive(Debug)]
pub(crate) struct Pending {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<PendingState>,
}

#[derive(Debug, Default)]
struct PendingState {
    next: u64,
    /// By admission order, so the first match is the oldest.
    entries: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    /// The remote has sent its first bytes.
    progressed: bool,
    /// Cancelled when the entry yields its slot to a newer connection.
    evicted: CancellationToken,
}

impl Pending {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            state: Mutex::new(PendingState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `ip`. When its address already holds its share, or the table is
    /// full, the least advanced and oldest connection (of that address, or of all) yields.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> PendingSlot {
        let mut st = self.lock();
        if st.entries.values().filter(|e| e.ip == ip).count() >= self.max_per_ip {
            st.evict(|e| e.ip == ip);
        } else if st.entries.len() >= self.max_total {
            st.evict(|_| true);
        }
        let id = st.next;
        st.next += 1;
        let evicted = CancellationToken::new();
        st.entries.insert(
            id,
            Entry {
                ip,
                progressed: false,
                evicted: evicted.clone(),
            },
        );
        PendingSlot {
            table: self.clone(),
            id,
            evicted,
        }
    }

    /// The number of connections in their handshake.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether a newcomer would make another connection yield.
    #[cfg(feature = "p2p")]
    pub(crate) fn is_full(&self) -> bool {
        self.lock().entries.len() >= self.max_total
    }
}

impl PendingState {
    fn evict(&mut self, matches: impl Fn(&Entry) -> bool) {
        let victim = self
            .entries
            .iter()
            .find(|(_, e)| !e.progressed && matches(e))
            .or_else(|| self.entries.iter().find(|(_, e)| matches(e)))
            .map(|(id, _)| *id);
        if let Some(entry) = victim.and_then(|id| self.entries.remove(&id)) {
            entry.evicted.cancel();
        }
    }
}

/// One connection's place in [`Pending`]; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    table: Arc<Pending>,
    id: u64,
    evicted: CancellationToken,
}

impl PendingSlot {
    /// Cancelled when the connection has to yield its place to a newer one.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }

    /// Marks the connection as one that has sent bytes: it now yields only after every silent one.
    pub(crate) fn progressed(&self) {
        if let Some(e) = self.table.lock().entries.get_mut(&self.id) {
            e.progressed = true;
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.table.lock().entries.remove(&self.id);
    }
}

/// Waits until `tcp` has bytes to read (or has ended), at most `timeout`; `false` when it
/// stayed silent. Marks `slot` as progressed when it spoke. Nothing is consumed.
pub(crate) async fn first_bytes(tcp: &TcpStream, timeout: Duration, slot: &PendingSlot) -> bool {
    match tokio::time::timeout(timeout, tcp.peek(&mut [0u8; 1])).await {
        Err(_) => false,
        // An error or an end of stream shows up again in the handshake's first read.
        Ok(_) => {
            slot.progressed();
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        Ipv4Addr::new(10, 0, 0, last).into()
    }

    #[test]
    fn a_full_table_evicts_the_oldest_silent_entry_then_the_oldest_advanced_one() {
        let table = Arc::new(Pending::new(3, 8));
        let a = table.admit(ip(1));
        let b = table.admit(ip(2));
        let c = table.admit(ip(3));
        b.progressed();
        a.progressed();
        let d = table.admit(ip(4));
        assert!(
            c.evicted.is_cancelled(),
            "the only silent entry yields first"
        );
        assert!(!a.evicted.is_cancelled() && !b.evicted.is_cancelled());
        d.progressed();
        let _e = table.admit(ip(5));
        assert!(
            a.evicted.is_cancelled(),
            "then the oldest of the advanced ones"
        );
        assert!(!b.evicted.is_cancelled() && !d.evicted.is_cancelled());
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn an_address_over_its_share_evicts_its_own_entries_only() {
        let table = Arc::new(Pending::new(10, 2));
        let other = table.admit(ip(9));
        let first = table.admit(ip(1));
        let second = table.admit(ip(1));
        let _third = table.admit(ip(1));
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled() && !other.evicted.is_cancelled());
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn a_finished_handshake_frees_its_slot() {
        let table = Arc::new(Pending::new(1, 1));
        let a = table.admit(ip(1));
        drop(a);
        let b = table.admit(ip(1));
        assert!(!b.evicted.is_cancelled());
        assert_eq!(table.len(), 1);
    }
}
