//! tower middleware around the rpc client, an rpc server made of a tower service, and a
//! request-response behaviour: each layer is shown to act (a timeout fires, a concurrency
//! limit holds, a retry sends again).
#![cfg(all(feature = "tower", feature = "prost", feature = "cbor"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use missive::rpc::echo::{self, Request, Response};
use missive::rpc::{CallError, Client, ClientConfig, Server, Status, StatusCode, TowerService};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

/// What the server side saw: calls made, the most at once.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

/// A tower service that answers after `delay`; "hang" never answers, and the first `failures`
/// calls fail with `Unavailable`.
fn service(
    seen: Arc<Seen>,
    delay: Duration,
    failures: usize,
) -> impl tower::Service<Request, Response = Response, Error = Status, Future: Send> + Clone + Send
{
    tower::service_fn(move |request: Request| {
        let seen = seen.clone();
        async move {
            let n = seen.calls.fetch_add(1, Ordering::SeqCst);
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_at_once.fetch_max(now, Ordering::SeqCst);
            if &request.body[..] == b"hang" {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(delay).await;
            seen.running.fetch_sub(1, Ordering::SeqCst);
            if n < failures {
                return Err(Status::new(StatusCode::Unavailable, "not yet"));
            }
            Ok(Response {
                body: request.body,
                ..Response::default()
            })
        }
    })
}

fn connect<S>(server_service: S) -> Client<Request, Response>
where
    S: tower::Service<Request, Response = Response, Error: Into<BoxError>, Future: Send>
        + Clone
        + Send
        + 'static,
{
    let (a, b) = missive::transport::memory::pair(64 * 1024);
    let server = Server::default();
    tokio::spawn(server.connection(
        b,
        echo::ServerCodec::default(),
        TowerService::new(server_service),
    ));
    Client::spawn(a, echo::ClientCodec::default(), ClientConfig::default())
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_around_the_rpc_client_fires_and_cancels_the_call() {
    let seen = Arc::new(Seen::default());
    let client = connect(service(seen.clone(), Duration::ZERO, 0));
    let mut timed = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(client.clone());
    let fast = timed
        .ready()
        .await
        .expect("ready")
        .call(Request::unary("fast"))
        .await;
    assert_eq!(&fast.expect("in time").body[..], b"fast");
    let slow = timed
        .ready()
        .await
        .expect("ready")
        .call(Request::unary("hang"))
        .await;
    let error = slow.expect_err("the timeout fires");
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    // The dropped call was cancelled on the server: a new call still gets through.
    let after = client
        .clone()
        .oneshot(Request::unary("after"))
        .await
        .expect("answered");
    assert_eq!(&after.body[..], b"after");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn tower_concurrency_limit_inside_the_rpc_server_holds_two_at_once() {
    let seen = Arc::new(Seen::default());
    let limited = ServiceBuilder::new().concurrency_limit(2).service(service(
        seen.clone(),
        Duration::from_millis(20),
        0,
    ));
    let client = connect(limited);
    let calls = (0..8).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.oneshot(Request::unary(format!("{i}"))).await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.expect("task").expect("answered");
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 8);
    assert_eq!(seen.most_at_once.load(Ordering::SeqCst), 2);

    // Without the limit, the same calls all run at once.
    let unlimited = Arc::new(Seen::default());
    let client = connect(service(unlimited.clone(), Duration::from_millis(20), 0));
    let calls = (0..8).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.oneshot(Request::unary(format!("{i}"))).await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.expect("task").expect("answered");
    }
    assert_eq!(unlimited.most_at_once.load(Ordering::SeqCst), 8);
}

/// Retries calls that failed with `Unavailable`, at most `left` more times.
#[derive(Clone)]
struct RetryUnavailable {
    left: usize,
}

impl tower::retry::Policy<Request, Response, CallError> for RetryUnavailable {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request,
        result: &mut Result<Response, CallError>,
    ) -> Option<Self::Future> {
        match result {
            Err(CallError::Failed(status))
                if status.code() == StatusCode::Unavailable && self.left > 0 =>
            {
                self.left -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, request: &Request) -> Option<Request> {
        Some(request.clone())
    }
}

#[tokio::test(start_paused = true)]
async fn tower_retry_around_the_rpc_client_sends_again_until_it_succeeds() {
    let seen = Arc::new(Seen::default());
    let client = connect(service(seen.clone(), Duration::ZERO, 2));
    let retrying = ServiceBuilder::new()
        .retry(RetryUnavailable { left: 3 })
        .service(client.clone());
    let response = retrying
        .oneshot(Request::unary("again"))
        .await
        .expect("the third try");
    assert_eq!(&response.body[..], b"again");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 3);

    // With fewer tries than failures, the last failure comes back.
    let seen = Arc::new(Seen::default());
    let client = connect(service(seen.clone(), Duration::ZERO, 5));
    let retrying = ServiceBuilder::new()
        .retry(RetryUnavailable { left: 1 })
        .service(client);
    let failed = retrying.oneshot(Request::unary("again")).await;
    assert!(
        matches!(failed, Err(CallError::Failed(ref s)) if s.code() == StatusCode::Unavailable),
        "{failed:?}"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tower_layers_around_a_request_response_behaviour() {
    use missive::p2p::{Keypair, Node, NodeConfig};
    use missive::request_response::{Behaviour, Config, ProtocolSupport, cbor};
    type Cbor = cbor::Codec<String, String>;
    let a = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let b = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let addr = a
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    b.add_address(a.peer_id(), addr);
    let protocols = [("/greet/1".to_owned(), ProtocolSupport::Full)];
    let server = Behaviour::<Cbor>::new(&a, protocols.clone(), Config::default()).expect("rr");
    let seen = Arc::new(Seen::default());
    {
        let seen = seen.clone();
        server
            .serve(move |_, request: String| {
                let seen = seen.clone();
                async move {
                    let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most_at_once.fetch_max(now, Ordering::SeqCst);
                    if request == "hang" {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    seen.running.fetch_sub(1, Ordering::SeqCst);
                    format!("hello {request}")
                }
            })
            .expect("serve");
    }
    let client = Behaviour::<Cbor>::new(&b, protocols, Config::default()).expect("rr");
    let peer = a.peer_id();

    // A concurrency limit of one on the client: requests reach the server one at a time.
    let limited = ServiceBuilder::new()
        .concurrency_limit(1)
        .timeout(Duration::from_secs(1))
        .service(client.clone());
    let requests = (0..4).map(|i| {
        let limited = limited.clone();
        tokio::spawn(async move { limited.oneshot((peer, format!("{i}"))).await })
    });
    for (i, request) in requests.collect::<Vec<_>>().into_iter().enumerate() {
        assert_eq!(
            request.await.expect("task").expect("answered"),
            format!("hello {i}")
        );
    }
    assert_eq!(seen.most_at_once.load(Ordering::SeqCst), 1);

    // The timeout fires long before the handler answers.
    let started = std::time::Instant::now();
    let timed_out = limited.oneshot((peer, "hang".to_owned())).await;
    assert!(
        timed_out
            .expect_err("timed out")
            .is::<tower::timeout::error::Elapsed>()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}
