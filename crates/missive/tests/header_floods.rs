//! 2,000 connections that each send only a header announcing the largest frame allowed: memory
//! follows the bytes that arrived, not what the headers claim.
//!
//! The figures are a process's own (`/proc/self/status`): each measurement runs in a fresh child
//! process of this test binary.
#![cfg(all(
    target_os = "linux",
    feature = "queue",
    feature = "rpc",
    feature = "prost"
))]

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use missive::queue::{Connection, QueueConfig};
use missive::rpc::Server;
use missive::rpc::codec::{DEFAULT_MAX_MESSAGE_SIZE, write_varint};
use missive::rpc::echo;
use tokio::io::AsyncWriteExt;

const CONNECTIONS: usize = 2_000;

/// Resident and virtual size of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("field")
    };
    (field("VmRSS:"), field("VmSize:"))
}

/// Lets every task run as far as it can (the paused clock moves only when all are idle).
async fn until_idle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn report(what: &str, before: (u64, u64), after: (u64, u64)) -> (u64, u64) {
    let rss = after.0.saturating_sub(before.0);
    let vm = after.1.saturating_sub(before.1);
    eprintln!(
        "{what}: {CONNECTIONS} connections: resident +{rss} KiB ({} B each), virtual +{vm} KiB ({} B each)",
        rss * 1024 / CONNECTIONS as u64,
        vm * 1024 / CONNECTIONS as u64
    );
    (rss, vm)
}

/// Per connection, at most: the read buffer after its first reservation step (for the queue, a
/// 64 KiB read chunk grown once), the writer's buffer, the pipe and the driver. A header that
/// reserved what it claims would cost 4 MiB (rpc) or 8 MiB (queue) of address space each.
const RESIDENT_KIB_EACH: u64 = 256;
const VIRTUAL_KIB_EACH: u64 = 512;

/// Which measurement a child process runs (each in a fresh process, so that memory freed by
/// one is not reused by the other).
const CHILD: &str = "MISSIVE_HEADER_FLOOD";

#[test]
fn rpc_headers_claiming_the_maximum_do_not_reserve_it() {
    in_child("rpc");
}

#[test]
fn queue_headers_claiming_the_maximum_do_not_reserve_it() {
    in_child("queue");
}

fn in_child(which: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_measures",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, which)
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the {which} measurement failed");
    assert!(
        stderr.contains("connections:"),
        "the child measured nothing"
    );
}

/// Runs in the child only (a no-op in the normal run).
#[test]
fn child_measures() {
    let Ok(which) = std::env::var(CHILD) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let (rss, vm) = match which.as_str() {
        "rpc" => rt.block_on(rpc_flood()),
        "queue" => rt.block_on(queue_flood()),
        other => panic!("unknown measurement {other}"),
    };
    assert!(
        rss < CONNECTIONS as u64 * RESIDENT_KIB_EACH,
        "resident +{rss} KiB"
    );
    assert!(
        vm < CONNECTIONS as u64 * VIRTUAL_KIB_EACH,
        "virtual +{vm} KiB"
    );
}

async fn rpc_flood() -> (u64, u64) {
    let server = Server::default();
    let mut header = BytesMut::new();
    write_varint(DEFAULT_MAX_MESSAGE_SIZE as u64, &mut header);
    header.put_u8(1 << 3);
    let before = memory_kib();
    let mut peers = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(server.connection(io, echo::ServerCodec::default(), echo::EchoService));
        peer.write_all(&header).await.expect("write");
        peers.push(peer);
    }
    until_idle().await;
    report("rpc", before, memory_kib())
}

async fn queue_flood() -> (u64, u64) {
    let config = QueueConfig::default();
    let max = 8u32 << 20;
    let mut header = BytesMut::new();
    header.put_u32(max);
    header.put_slice(&[0, 1, 0, 1]);
    let before = memory_kib();
    let mut peers = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        let mut connection = Connection::new(io, config.clone());
        tokio::spawn(async move { connection.reader().recv().await.map(|r| r.is_ok()) });
        peer.write_all(&header).await.expect("write");
        peers.push(peer);
    }
    until_idle().await;
    report("queue", before, memory_kib())
}
