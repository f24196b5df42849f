//! `missive rr serve` answering `missive rr call`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn missive() -> Command {
    Command::new(env!("CARGO_BIN_EXE_missive"))
}

#[test]
fn rr_call_gets_a_json_answer_from_rr_serve() {
    let mut server = missive()
        .args(["rr", "serve", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("peer line");
    line.clear();
    stdout.read_line(&mut line).expect("address line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address")
        .to_owned();

    let out = missive()
        .args(["rr", "call", &addr, r#"{"hello":[1,2]}"#])
        .output()
        .expect("call");
    let bad = missive()
        .args(["rr", "call", &addr, "{not json"])
        .output()
        .expect("bad call");
    let _ = server.kill();
    let _ = server.wait();

    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the answer is JSON");
    assert_eq!(answer["request"], serde_json::json!({"hello": [1, 2]}));
    assert!(
        answer["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("12D3KooW"))
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not valid JSON"));
}

#[test]
fn rr_serve_listens_on_websocket_by_default_and_answers_a_call_over_ws() {
    let mut server = missive()
        .args(["rr", "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut addrs = Vec::new();
    let mut line = String::new();
    stdout.read_line(&mut line).expect("peer line");
    for _ in 0..16 {
        line.clear();
        stdout.read_line(&mut line).expect("address line");
        match line.trim().strip_prefix("listening on ") {
            Some(a) => addrs.push(a.to_owned()),
            None => break,
        }
        if addrs.iter().any(|a| a.contains("/ws/p2p/")) {
            break;
        }
    }
    let ws = addrs
        .iter()
        .find(|a| a.contains("/ws/p2p/"))
        .unwrap_or_else(|| panic!("no WebSocket address in {addrs:?}"))
        .clone();
    let out = missive()
        .args(["rr", "call", &ws, r#"{"over":"ws"}"#])
        .output()
        .expect("call");
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the answer is JSON");
    assert_eq!(answer["request"], serde_json::json!({"over": "ws"}));
}
