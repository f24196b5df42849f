//! The `missive` binary as a person uses it: demo output, and a listener and a sender talking.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn missive() -> Command {
    Command::new(env!("CARGO_BIN_EXE_missive"))
}

#[test]
fn demo_reports_every_layer_as_passed() {
    let out = missive()
        .args([
            "demo",
            "--count",
            "5000",
            "--echoes",
            "500",
            "--calls",
            "2000",
            "--requests",
            "200",
            "--json",
        ])
        .output()
        .expect("run demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    for transport in ["tcp", "tls"] {
        let row = lines
            .iter()
            .find(|v| v["layer"] == "queue" && v["transport"] == transport)
            .unwrap_or_else(|| panic!("no queue/{transport} row in {lines:?}"));
        assert_eq!(row["passed"], true);
        assert_eq!(row["exchanged"], 5000);
    }
    for (layer, transport) in [
        ("node", "tcp+noise+yamux"),
        ("node", "quic"),
        ("node", "ws+noise+yamux"),
        ("rpc", "tcp"),
        ("rpc", "node stream"),
        ("request_response", "tcp/json"),
        ("request_response", "quic/json"),
    ] {
        let row = lines
            .iter()
            .find(|v| v["layer"] == layer && v["transport"] == transport)
            .unwrap_or_else(|| panic!("no {layer}/{transport} row in {lines:?}"));
        assert_eq!(row["passed"], true, "{row}");
    }
    assert_eq!(lines.len(), 9, "one row per layer and transport: {lines:?}");
}

#[test]
fn queue_send_gets_echoes_from_queue_listen() {
    let mut listener = missive()
        .args([
            "queue",
            "listen",
            "127.0.0.1:0",
            "--echo",
            "--connections",
            "1",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn listener");
    let mut stderr = BufReader::new(listener.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("read banner");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("unexpected banner {first:?}"))
        .to_owned();

    let out = missive()
        .args([
            "queue",
            "send",
            &addr,
            "--tag",
            "7",
            "--expect-replies",
            "hello",
            "world",
        ])
        .output()
        .expect("run send");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tag=7 hello\ntag=7 world\n"
    );

    // The listener serves exactly one connection, then exits by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = listener.try_wait().expect("wait") {
            assert!(status.success());
            break;
        }
        if Instant::now() > deadline {
            let _ = listener.kill();
            panic!("listener did not exit after its one connection");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sending_to_a_closed_port_fails_with_a_clear_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = missive()
        .args(["queue", "send", &format!("127.0.0.1:{port}"), "x"])
        .output()
        .expect("run send");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to 127.0.0.1"), "{stderr}");
}
