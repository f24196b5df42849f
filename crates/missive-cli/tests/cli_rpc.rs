//! `missive rpc serve` answering `missive rpc call`, unary and streaming.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn missive() -> Command {
    Command::new(env!("CARGO_BIN_EXE_missive"))
}

#[test]
fn rpc_call_gets_unary_and_streamed_echoes_from_rpc_serve() {
    let mut server = missive()
        .args(["rpc", "serve", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn server");
    // Keep reading the server's stderr open for its whole life: it logs every connection there.
    let mut stderr = BufReader::new(server.stderr.take().expect("stderr"));
    let mut banner = String::new();
    stderr.read_line(&mut banner).expect("banner");
    let addr = banner
        .trim()
        .strip_prefix("serving rpc echo on ")
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"))
        .to_owned();

    let unary = missive()
        .args(["rpc", "call", &addr, "hello"])
        .output()
        .expect("call");
    let streamed = missive()
        .args(["rpc", "call", &addr, "again", "--stream", "3"])
        .output()
        .expect("stream call");
    let _ = server.kill();
    let _ = server.wait();
    drop(stderr);

    assert!(
        unary.status.success(),
        "{}",
        String::from_utf8_lossy(&unary.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&unary.stdout), "hello\n");
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&streamed.stdout),
        "1: again\n2: again\n3: again\n"
    );
    assert!(String::from_utf8_lossy(&streamed.stderr).contains("stream ended after 3 answers"));
}
