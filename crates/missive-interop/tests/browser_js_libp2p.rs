//! js-libp2p 3 in headless Chromium (Debian's `chromium`, driven by playwright-core) dials a
//! missive node on loopback, once over plain WebSocket and once over WebTransport: it pings the
//! node, runs identify, echoes 10 B, 1 KiB and 100 KiB on `/echo/1.0.0` and makes one JSON
//! request-response call. Every result is checked here against what the node knows, not only
//! against the page's own checks.
//!
//! Needs Chromium, Node.js and `npm ci` in `crates/missive-interop/browser` (`.ci/run` installs
//! them and sets `MISSIVE_BROWSER_TESTS=require`, so that there a missing piece fails the tests);
//! elsewhere the tests say what is missing and how to install it, and skip.

use missive::protocols::identify::{AGENT_VERSION, PROTOCOL_VERSION};
use missive_interop::browser::{
    self, BrowserPeer, BrowserTransport, ECHO_PROTOCOL, ECHO_SIZES, JSON_PROTOCOL, JSON_TEXT,
    JsonRequest, JsonResponse, PageRun, echo_pattern, sha256_hex,
};

/// `false` when the tests are to be skipped. With `MISSIVE_BROWSER_TESTS=require` (as `.ci/run`
/// sets it) a missing prerequisite fails the test; without it, the test says what is missing and
/// how to install it, and skips, so that the test command works on a machine without a browser.
fn browser_available() -> bool {
    if browser::skip_requested() {
        eprintln!(
            "{}=skip: the browser test is skipped",
            browser::SKIP_VARIABLE
        );
        return false;
    }
    match browser::check_prerequisites() {
        Ok(()) => true,
        Err(missing) if browser::required() => {
            panic!("the browser test cannot run: {missing}")
        }
        Err(missing) => {
            eprintln!(
                "SKIPPED: the browser test cannot run here: {missing}\n\
                 ({}=require makes this a failure; .ci/run sets it)",
                browser::SKIP_VARIABLE
            );
            false
        }
    }
}

/// Runs the page against a node listening on `transport` and checks every result.
async fn page_against_missive(transport: BrowserTransport) {
    if !browser_available() {
        return;
    }
    browser::build_bundle().expect("bundling the page");
    let peer = BrowserPeer::start(&[transport])
        .await
        .expect("starting the node");
    let address = peer.address(transport).expect("a dial address").clone();
    let run = browser::run_page(&peer.dial_addresses())
        .await
        .expect("running the page");
    check(&peer, transport, &address.to_string(), &run);
    peer.shutdown().await;
}

fn check(peer: &BrowserPeer, transport: BrowserTransport, address: &str, run: &PageRun) {
    let context = || format!("runner status {}; stderr:\n{}", run.status, run.stderr);
    assert_eq!(run.status, 0, "the page did not finish: {}", context());
    let results = &run.results;
    assert!(results.done, "{}", context());
    assert!(
        results.errors.is_empty(),
        "page errors {:?}",
        results.errors
    );
    let name = transport.name();
    let page = results
        .transports
        .get(name)
        .unwrap_or_else(|| panic!("no {name} results: {results:?}"));
    assert!(
        page.errors.is_empty(),
        "{name}: the page's steps failed: {:?}\n{}",
        page.errors,
        context()
    );
    assert!(page.ok);
    assert_eq!(page.address, address);
    let node_id = peer.node().peer_id().to_string();

    let dial = page.dial.as_ref().expect("dial results");
    assert_eq!(dial.remote_peer, node_id, "the connection's peer");
    let dialed_transport = address.split("/p2p/").next().unwrap_or(address);
    assert!(
        dial.remote_addr
            .starts_with(dialed_transport.split("/certhash/").next().unwrap_or("")),
        "connection on {} for a dial to {address}",
        dial.remote_addr
    );
    if transport == BrowserTransport::WebSocket {
        assert_eq!(dial.encryption.as_deref(), Some("/noise"));
        assert_eq!(dial.multiplexer.as_deref(), Some("/yamux/1.0.0"));
    }

    let ping = page.ping.as_ref().expect("ping results");
    assert!(ping.measured_ms > 0.0, "ping time {ping:?}");
    assert!(
        ping.rtt_ms >= 0.0 && ping.rtt_ms <= ping.measured_ms + 1.0,
        "{ping:?}"
    );

    let identify = page.identify.as_ref().expect("identify results");
    assert_eq!(identify.peer_id, node_id);
    assert_eq!(identify.agent_version.as_deref(), Some(AGENT_VERSION));
    assert_eq!(identify.protocol_version.as_deref(), Some(PROTOCOL_VERSION));
    for protocol in [
        "/ipfs/ping/1.0.0",
        "/ipfs/id/1.0.0",
        ECHO_PROTOCOL.as_str(),
        JSON_PROTOCOL,
    ] {
        assert!(
            identify.protocols.iter().any(|p| p == protocol),
            "identify lists {:?}, not {protocol}",
            identify.protocols
        );
    }
    let listening = dialed_transport.to_owned();
    assert!(
        identify.listen_addrs.contains(&listening),
        "identify's listen addresses {:?} lack {listening}",
        identify.listen_addrs
    );
    assert!(
        identify
            .observed_addr
            .as_deref()
            .is_some_and(|a| a.starts_with("/ip4/127.0.0.1/")),
        "observed address {:?}",
        identify.observed_addr
    );

    // The echoes: the page sent the agreed pattern, the node received exactly it, and the page
    // got exactly it back.
    assert_eq!(page.echo.len(), ECHO_SIZES.len(), "{:?}", page.echo);
    let echoed = peer.echoed();
    for (echo, size) in page.echo.iter().zip(ECHO_SIZES) {
        let expected = sha256_hex(&echo_pattern(size));
        assert_eq!(echo.size, size);
        assert_eq!(
            echo.sent_sha256, expected,
            "{size} B: the page sent another pattern"
        );
        assert_eq!(echo.received_length, size, "{size} B: echo length");
        assert_eq!(
            echo.received_sha256, expected,
            "{size} B: echoed bytes differ"
        );
        assert!(echo.equal, "{size} B: the page saw a difference");
        assert!(
            echoed
                .iter()
                .any(|e| e.length == size && e.sha256 == expected),
            "{size} B: the node did not receive the pattern: {echoed:?}"
        );
    }

    let json = page.json.as_ref().expect("JSON results");
    let request = JsonRequest {
        text: JSON_TEXT.to_owned(),
    };
    assert_eq!(json.request, request);
    assert_eq!(json.response, JsonResponse::to(&request));
    assert_eq!(json.response.upper, JSON_TEXT.to_uppercase());

    let echo_ms: Vec<String> = page
        .echo
        .iter()
        .map(|e| format!("{} B {:.1} ms", e.size, e.ms))
        .collect();
    eprintln!(
        "{name}: {} — Chromium start {} ms, page {} ms; dial {:.1} ms, ping {:.2} ms (js-libp2p: {} ms), echo {}",
        results.user_agent,
        run.timings.launch_ms,
        run.timings.page_ms,
        dial.ms,
        ping.measured_ms,
        ping.rtt_ms,
        echo_ms.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_over_websocket() {
    page_against_missive(BrowserTransport::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_over_webtransport() {
    page_against_missive(BrowserTransport::WebTransport).await;
}
