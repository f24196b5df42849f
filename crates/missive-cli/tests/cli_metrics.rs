//! `--metrics`: the long-running commands serve OpenMetrics over HTTP, and a scrape after a
//! scripted workload shows exact counts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

fn missive() -> Command {
    Command::new(env!("CARGO_BIN_EXE_missive"))
}

/// A running command, killed when dropped, and its stderr.
struct Running {
    child: Child,
    stderr: BufReader<ChildStderr>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = missive()
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        Running { child, stderr }
    }

    /// Waits for a stderr line that contains `text` (at most 10 lines looked at).
    fn wait_for(&mut self, text: &str) {
        for _ in 0..10 {
            let mut line = String::new();
            self.stderr.read_line(&mut line).expect("stderr line");
            if line.contains(text) {
                return;
            }
        }
        panic!("no line with {text:?}");
    }

    /// The rest of the next stderr line that starts with `prefix` (at most 10 lines looked at).
    fn line_after(&mut self, prefix: &str) -> String {
        for _ in 0..10 {
            let mut line = String::new();
            self.stderr.read_line(&mut line).expect("stderr line");
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        panic!("no line starting with {prefix:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request for `path`: the status line, the headers and the body.
fn get(addr: &str, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").expect("a status line");
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// Scrapes `/metrics` and parses every sample strictly (see `samples`).
fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (status, headers, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    let length: usize = headers
        .lines()
        .find_map(|h| h.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("a length");
    assert_eq!(length, body.len());
    samples(&body)
}

/// Every sample of an OpenMetrics text by `name{labels}`; panics on any other line and when
/// the text does not end with `# EOF`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut ended = false;
    for line in text.lines() {
        assert!(!ended, "text after # EOF: {line}");
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let name = key.split('{').next().unwrap_or_default();
        assert!(
            name.starts_with("missive_")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad name: {line}"
        );
        if let Some(labels) = key.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels: {line}"));
            for pair in inner.split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(
                    k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    "bad label: {line}"
                );
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "bad label: {line}"
                );
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(
            out.insert(key.to_owned(), value).is_none(),
            "duplicate: {line}"
        );
    }
    assert!(ended, "no # EOF");
    out
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
}

fn run_ok(args: &[&str]) -> String {
    let out = missive().args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rpc_serve_metrics_count_the_calls_of_a_scripted_workload() {
    let mut server = Running::start(&["rpc", "serve", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let metrics = server
        .line_after("metrics on http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let addr = server.line_after("serving rpc echo on ");

    let before = scrape(&metrics);
    assert_eq!(
        value(
            &before,
            r#"missive_rpc_calls_total{side="server",kind="unary",status="ok"}"#
        ),
        0.0
    );
    for i in 0..5 {
        assert_eq!(
            run_ok(&["rpc", "call", &addr, &format!("hello {i}")]),
            format!("hello {i}\n")
        );
    }
    run_ok(&["rpc", "call", &addr, "again", "--stream", "3"]);

    let s = scrape(&metrics);
    let calls = |kind: &str| {
        value(
            &s,
            &format!(r#"missive_rpc_calls_total{{side="server",kind="{kind}",status="ok"}}"#),
        )
    };
    assert_eq!(calls("unary"), 5.0);
    assert_eq!(calls("server_stream"), 1.0);
    assert_eq!(
        value(&s, r#"missive_rpc_connections_total{side="server"}"#),
        6.0
    );
    assert_eq!(
        value(&s, r#"missive_rpc_calls_in_flight{side="server"}"#),
        0.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_rpc_call_duration_seconds_count{side="server",kind="unary"}"#
        ),
        5.0
    );
    assert!(value(&s, r#"missive_rpc_received_bytes_total{side="server"}"#) > 0.0);

    let (status, _, _) = get(&metrics, "/other");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn queue_listen_metrics_count_datagrams_and_bytes_of_a_scripted_workload() {
    let mut server =
        Running::start(&["queue", "listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let metrics = server
        .line_after("metrics on http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let listening = server.line_after("listening on ");
    let addr = listening.trim_start_matches("tcp://").to_owned();

    run_ok(&["queue", "send", &addr, "--tag", "7", "a", "bb", "ccc"]);
    run_ok(&["queue", "send", &addr, "dddd"]);
    // The listener has read both connections to their end once it says so.
    server.wait_for("closed after");
    server.wait_for("closed after");

    let s = scrape(&metrics);
    assert_eq!(
        value(&s, r#"missive_queue_datagrams_total{direction="in"}"#),
        4.0
    );
    // Frames: 8 header bytes each, plus 1 + 2 + 3 + 4 bytes of payload.
    assert_eq!(
        value(&s, r#"missive_queue_bytes_total{direction="in"}"#),
        42.0
    );
    assert_eq!(
        value(&s, r#"missive_queue_datagrams_total{direction="out"}"#),
        0.0
    );
    assert_eq!(
        value(&s, r#"missive_queue_connections_total{side="server"}"#),
        2.0
    );
}

#[test]
fn json_logs_follow_an_rpc_from_its_connection_to_its_end() {
    let mut server = missive()
        .args(["--log-format", "json", "rpc", "serve", "127.0.0.1:0"])
        .env("RUST_LOG", "missive=debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stderr = BufReader::new(server.stderr.take().expect("stderr"));
    let mut addr = None;
    for _ in 0..10 {
        let mut line = String::new();
        stderr.read_line(&mut line).expect("stderr line");
        if let Some(a) = line.trim().strip_prefix("serving rpc echo on ") {
            addr = Some(a.to_owned());
            break;
        }
    }
    let addr = addr.expect("the server's banner");
    assert_eq!(run_ok(&["rpc", "call", &addr, "hello"]), "hello\n");
    let mut running = Running {
        child: server,
        stderr,
    };
    // The events of that call, in order, each inside the connection's span.
    let mut story = Vec::new();
    for _ in 0..20 {
        let mut line = String::new();
        running.stderr.read_line(&mut line).expect("stderr line");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            continue; // the command's own messages are text
        };
        let message = event["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let span = &event["span"];
        assert_eq!(span["name"], "rpc_connection", "{event}");
        assert!(
            span["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{event}"
        );
        if message != "rpc connection accepted" {
            assert_eq!(event["fields"]["id"], 1, "{event}");
        }
        story.push(message);
        if story.len() == 3 {
            break;
        }
    }
    assert_eq!(
        story,
        ["rpc connection accepted", "rpc started", "rpc ended"]
    );
}

#[test]
fn node_listen_metrics_count_the_connections_and_streams_of_two_identifies() {
    let mut child = missive()
        .args([
            "node",
            "listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut node = Running { child, stderr };
    let metrics = node
        .line_after("metrics on http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let mut addr = None;
    for _ in 0..10 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("stdout line");
        if let Some(a) = line.trim().strip_prefix("listening on ") {
            addr = Some(a.to_owned());
            break;
        }
    }
    let addr = addr.expect("a listen address");
    for _ in 0..2 {
        run_ok(&["node", "identify", &addr]);
    }
    let s = scrape(&metrics);
    assert_eq!(
        value(&s, r#"missive_node_handshakes_total{direction="inbound"}"#),
        2.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_node_connections_total{transport="tcp",direction="inbound"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &s,
            r#"missive_node_streams_total{direction="inbound",protocol="/ipfs/id/1.0.0"}"#
        ),
        2.0
    );
    assert_eq!(value(&s, "missive_node_pending_handshakes"), 0.0);
}
