//! `missive node listen`, `missive node identify` and `missive ping` talking to each other.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn missive() -> Command {
    Command::new(env!("CARGO_BIN_EXE_missive"))
}

/// A child process that is ended when the test ends, whether it passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ping_reaches_a_listening_node_by_its_printed_address() {
    let dir = std::env::temp_dir().join(format!("missive-cli-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("node.key");
    let mut node = Running(
        missive()
            .args(["node", "listen", "--key"])
            .arg(&key)
            .arg("/ip4/127.0.0.1/tcp/0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node"),
    );
    let mut stdout = BufReader::new(node.0.stdout.take().expect("stdout"));
    let mut peer_line = String::new();
    let mut addr_line = String::new();
    stdout.read_line(&mut peer_line).expect("peer line");
    stdout.read_line(&mut addr_line).expect("addr line");
    let peer = peer_line
        .trim()
        .strip_prefix("peer id: ")
        .expect("peer id line")
        .to_owned();
    let addr = addr_line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_owned();
    assert!(
        addr.ends_with(&format!("/p2p/{peer}")),
        "{addr} does not end with /p2p/{peer}"
    );

    let out = missive()
        .args(["ping", &addr, "--count", "3", "--interval-ms", "10"])
        .output()
        .expect("run ping");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("connected to {peer}")), "{text}");
    assert!(text.contains("3 of 3 answered"), "{text}");

    let out = missive()
        .args(["node", "identify", &addr])
        .output()
        .expect("run identify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("peer id: {peer}")), "{text}");
    assert!(text.contains("agent: missive/"), "{text}");
    let bare = addr.rsplit_once("/p2p/").expect("p2p suffix").0;
    assert!(text.contains(&format!("listen address: {bare}")), "{text}");
    for protocol in ["/echo/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
        assert!(text.contains(&format!("protocol: {protocol}")), "{text}");
    }
    drop(node);

    // The key file keeps the identity across restarts.
    let again = missive()
        .args(["node", "listen", "--key"])
        .arg(&key)
        .arg("/ip4/127.0.0.1/tcp/0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn again");
    let mut again = again;
    let mut line = String::new();
    BufReader::new(again.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("peer line");
    let _ = again.kill();
    let _ = again.wait();
    assert_eq!(line.trim(), format!("peer id: {peer}"));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_node_with_a_secp256k1_key_answers_ping_and_keeps_its_key_type() {
    let dir = std::env::temp_dir().join(format!("missive-cli-secp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("node.key");
    let start = |extra: &[&str]| {
        let mut child = Running(
            missive()
                .args(["node", "listen", "--key"])
                .arg(&key)
                .args(extra)
                .arg("/ip4/127.0.0.1/tcp/0")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn node"),
        );
        let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
        let (mut peer, mut addr) = (String::new(), String::new());
        stdout.read_line(&mut peer).expect("peer line");
        stdout.read_line(&mut addr).expect("addr line");
        let peer = peer
            .trim()
            .strip_prefix("peer id: ")
            .expect("peer id")
            .to_owned();
        let addr = addr
            .trim()
            .strip_prefix("listening on ")
            .expect("address")
            .to_owned();
        // The reader stays open with the node: a node printing into a closed pipe would end.
        ((child, stdout), peer, addr)
    };
    let (node, peer, addr) = start(&["--key-type", "secp256k1"]);
    assert!(
        peer.starts_with("16Uiu2HA"),
        "{peer} is not a secp256k1 peer id"
    );
    let out = missive()
        .args(["ping", &addr, "--count", "2", "--interval-ms", "10"])
        .output()
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("2 of 2 answered"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(node);
    // The key file decides the type of an existing identity.
    let (_again, same, _) = start(&[]);
    assert_eq!(same, peer);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn ping_with_a_wrong_peer_id_fails_with_a_clear_message() {
    let mut node = Running(
        missive()
            .args(["node", "listen", "/ip4/127.0.0.1/tcp/0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node"),
    );
    let mut stdout = BufReader::new(node.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("peer line");
    line.clear();
    stdout.read_line(&mut line).expect("addr line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address")
        .to_owned();
    let (base, _) = addr.rsplit_once("/p2p/").expect("p2p part");
    // A valid PeerId that is not the node's.
    let other = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";
    let out = missive()
        .args(["ping", &format!("{base}/p2p/{other}"), "--count", "1"])
        .output()
        .expect("run ping");
    drop(node);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(
        stderr.contains(other),
        "the error names the expected peer: {stderr}"
    );
}

#[test]
fn node_listen_serves_tcp_and_quic_by_default_and_ping_and_identify_work_over_quic() {
    let mut node = Running(
        missive()
            .args(["node", "listen"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node"),
    );
    let mut stdout = BufReader::new(node.0.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    // The peer id, then TCP, QUIC, WebTransport on the QUIC port and WebSocket.
    for _ in 0..5 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("line");
        lines.push(line.trim().to_owned());
    }
    let addrs: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("listening on "))
        .collect();
    assert!(addrs.iter().any(|a| a.contains("/tcp/")), "{lines:?}");
    let quic = addrs
        .iter()
        .find(|a| a.contains("/udp/") && a.contains("/quic-v1/p2p/"))
        .unwrap_or_else(|| panic!("no QUIC address in {lines:?}"));
    // WebTransport on the QUIC port, with the hashes of its two certificates.
    let quic_port = quic.split('/').nth(4).expect("the udp port");
    let web = addrs
        .iter()
        .find(|a| a.contains("/quic-v1/webtransport/certhash/"))
        .unwrap_or_else(|| panic!("no WebTransport address in {lines:?}"));
    assert_eq!(web.split('/').nth(4), Some(quic_port), "{web}");
    assert_eq!(web.matches("/certhash/").count(), 2, "{web}");
    let out = missive()
        .args(["ping", quic, "--count", "2", "--interval-ms", "10"])
        .output()
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 of 2 answered"), "{text}");
    let out = missive()
        .args(["node", "identify", quic])
        .output()
        .expect("run identify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("/quic-v1"), "{text}");
}

#[test]
fn node_listen_serves_websocket_by_default_and_ping_and_identify_work_over_ws() {
    let mut node = Running(
        missive()
            .args(["node", "listen"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node"),
    );
    let mut stdout = BufReader::new(node.0.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    // The peer id, then one line per listen address, then what it serves.
    for _ in 0..16 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("line");
        lines.push(line.trim().to_owned());
        if line.starts_with("serving") {
            break;
        }
    }
    let addrs: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("listening on "))
        .collect();
    assert!(addrs.iter().any(|a| a.contains("/quic-v1")), "{lines:?}");
    let ws = addrs
        .iter()
        .find(|a| a.contains("/tcp/") && a.contains("/ws/p2p/"))
        .unwrap_or_else(|| panic!("no WebSocket address in {lines:?}"));
    let out = missive()
        .args(["ping", ws, "--count", "2", "--interval-ms", "10"])
        .output()
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 of 2 answered"), "{text}");
    let out = missive()
        .args(["node", "identify", ws])
        .output()
        .expect("run identify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("/ws"),
        "the ws listen address is announced: {text}"
    );
}
