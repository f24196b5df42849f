//! A protosocket-style rpc service with prost messages, over TCP on loopback: a unary call, a
//! server-streaming call, and two cancellations (the client drops a stream; a call passes its
//! deadline), each seen by the server. Ends by itself:
//!
//! ```text
//! cargo run -p missive --example rpc_service --features prost
//! ```
//!
//! As in protosocket-rpc, the message id and control code are fields of your own messages
//! (fields 1 and 2, protosocket-prost's convention) and the [`Message`] trait tells the library
//! where they are. Unlike protosocket-rpc, the library picks the ids, every unary call has a
//! deadline (10 s unless set), and a failed rpc reaches the caller with a [`Status`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use missive::rpc::prost::ProstCodec;
use missive::rpc::{
    CallContext, CallError, CallOptions, Client, ClientConfig, ControlCode, Message, Reply, Server,
    Service, Status, StatusCode,
};
use tokio::sync::mpsc;

/// A request: `method` names what the server does.
#[derive(Clone, PartialEq, ::prost::Message)]
pub(crate) struct Request {
    /// The rpc id (chosen by the library).
    #[prost(uint64, tag = "1")]
    pub(crate) request_id: u64,
    /// The control code (Normal, Cancel, End).
    #[prost(uint32, tag = "2")]
    pub(crate) code: u32,
    /// `"hello"`, `"count"` or `"ticks"`.
    #[prost(string, tag = "3")]
    pub(crate) method: String,
    /// The name to greet.
    #[prost(string, tag = "4")]
    pub(crate) name: String,
    /// How far to count.
    #[prost(uint32, tag = "5")]
    pub(crate) count: u32,
}

/// A response, or one item of a response stream.
#[derive(Clone, PartialEq, ::prost::Message)]
pub(crate) struct Response {
    /// The rpc id.
    #[prost(uint64, tag = "1")]
    pub(crate) request_id: u64,
    /// The control code.
    #[prost(uint32, tag = "2")]
    pub(crate) code: u32,
    /// The answer.
    #[prost(string, tag = "3")]
    pub(crate) text: String,
    /// The status code of a failed rpc (0: none).
    #[prost(uint32, tag = "4")]
    pub(crate) status_code: u32,
    /// The status message of a failed rpc.
    #[prost(string, tag = "5")]
    pub(crate) status_message: String,
}

impl Request {
    fn new(method: &str) -> Self {
        Self {
            method: method.to_owned(),
            ..Self::default()
        }
    }
}

impl Message for Request {
    fn message_id(&self) -> u64 {
        self.request_id
    }
    fn control_code(&self) -> ControlCode {
        ControlCode::from_u32(self.code)
    }
    fn set_message_id(&mut self, id: u64) {
        self.request_id = id;
    }
    fn cancelled(id: u64) -> Self {
        Self {
            request_id: id,
            code: ControlCode::Cancel as u32,
            ..Self::default()
        }
    }
    fn ended(id: u64) -> Self {
        Self {
            request_id: id,
            code: ControlCode::End as u32,
            ..Self::default()
        }
    }
}

impl Message for Response {
    fn message_id(&self) -> u64 {
        self.request_id
    }
    fn control_code(&self) -> ControlCode {
        ControlCode::from_u32(self.code)
    }
    fn set_message_id(&mut self, id: u64) {
        self.request_id = id;
    }
    fn cancelled(id: u64) -> Self {
        Self {
            request_id: id,
            code: ControlCode::Cancel as u32,
            ..Self::default()
        }
    }
    fn ended(id: u64) -> Self {
        Self {
            request_id: id,
            code: ControlCode::End as u32,
            ..Self::default()
        }
    }
    // A failed rpc carries its status, so the caller learns why (a protosocket-rpc peer
    // would see only Cancel).
    fn failed(id: u64, status: Status) -> Self {
        Self {
            request_id: id,
            code: ControlCode::Cancel as u32,
            status_code: status.code().as_u32(),
            status_message: status.message().to_owned(),
            ..Self::default()
        }
    }
    fn status(&self) -> Option<Status> {
        (self.status_code != 0).then(|| {
            Status::new(
                StatusCode::from_u32(self.status_code),
                self.status_message.clone(),
            )
        })
    }
}

fn answer(text: impl Into<String>) -> Response {
    Response {
        text: text.into(),
        ..Response::default()
    }
}

type Unary = Pin<Box<dyn Future<Output = Result<Response, Status>> + Send>>;

/// The service, one value per connection. `cancelled` tells the program when the server
/// dropped the work of a cancelled rpc.
struct Greeter {
    cancelled: mpsc::Sender<&'static str>,
}

/// Reports when the work holding it is dropped: what the server does with a cancelled rpc.
struct OnDrop(&'static str, mpsc::Sender<&'static str>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.1.try_send(self.0);
    }
}

impl Service for Greeter {
    type Request = Request;
    type Response = Response;
    type Unary = Unary;
    type Stream = BoxStream<'static, Result<Response, Status>>;

    fn call(
        &mut self,
        request: Request,
        _context: &mut CallContext<Request>,
    ) -> Reply<Unary, Self::Stream> {
        match request.method.as_str() {
            // unary
            "hello" => Reply::Unary(Box::pin(async move {
                Ok(answer(format!("Hello, {}!", request.name)))
            })),
            // server streaming: 1..=count, then End
            "count" => Reply::Stream(
                futures_util::stream::iter(1..=request.count)
                    .map(|i| Ok(answer(i.to_string())))
                    .boxed(),
            ),
            // an endless stream, one tick every 20 ms, until the client cancels
            "ticks" => {
                let guard = OnDrop("ticks", self.cancelled.clone());
                Reply::Stream(
                    futures_util::stream::unfold((0u64, guard), |(i, guard)| async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Some((Ok(answer(format!("tick {i}"))), (i + 1, guard)))
                    })
                    .boxed(),
                )
            }
            // a call that never answers: its deadline cancels it
            "stall" => {
                let guard = OnDrop("stall", self.cancelled.clone());
                Reply::Unary(Box::pin(async move {
                    let _guard = guard;
                    std::future::pending().await
                }))
            }
            other => Reply::Reject(Status::new(
                StatusCode::Rejected,
                format!("no method {other:?}"),
            )),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}

/// The server and a client on loopback, under one deadline.
pub(crate) async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(Duration::from_secs(20), calls())
        .await
        .map_err(|_| "the rpc example did not finish within 20 s")?
}

async fn calls() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Server::default();
    let (cancelled, mut cancellations) = mpsc::channel(8);
    let serving = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve_tcp(listener, move |_peer| {
                    let service = Greeter {
                        cancelled: cancelled.clone(),
                    };
                    (ProstCodec::<Response, Request>::default(), service)
                })
                .await
        }
    });

    let client: Client<Request, Response> = Client::connect_tcp(
        addr,
        ProstCodec::<Request, Response>::default(),
        ClientConfig::default(),
    )
    .await?;

    // Unary.
    let mut hello = Request::new("hello");
    hello.name = "missive".into();
    let response = client.call(hello).await?;
    println!("unary: {}", response.text);
    assert_eq!(response.text, "Hello, missive!");

    // Server streaming.
    let mut count = Request::new("count");
    count.count = 5;
    let items: Vec<String> = client
        .server_stream(count)
        .await?
        .map(|item| item.map(|r| r.text))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("stream: {}", items.join(" "));
    assert_eq!(items, ["1", "2", "3", "4", "5"]);

    // Cancellation by dropping: take three ticks, drop the stream, and the server drops the
    // rpc's work.
    let ticks: Vec<_> = client
        .server_stream(Request::new("ticks"))
        .await?
        .take(3)
        .collect()
        .await;
    assert_eq!(ticks.len(), 3);
    assert_eq!(cancellations.recv().await, Some("ticks"));
    println!(
        "cancel: the server dropped the ticks after {} items",
        ticks.len()
    );

    // Cancellation by deadline: the call fails with DeadlineExceeded and is cancelled on the
    // server.
    let stalled = client
        .call_with(
            Request::new("stall"),
            CallOptions::default().with_deadline(Some(Duration::from_millis(100))),
        )
        .await;
    assert!(matches!(stalled, Err(CallError::DeadlineExceeded)));
    assert_eq!(cancellations.recv().await, Some("stall"));
    println!("deadline: the stalled call was cancelled on the server");

    // A failure reaches the caller with its status.
    match client.call(Request::new("nope")).await {
        Err(CallError::Failed(status)) => println!("status: {status}"),
        other => return Err(format!("expected a rejection, got {other:?}").into()),
    }

    drop(client);
    server.shutdown().await;
    serving.await??;
    Ok(())
}
