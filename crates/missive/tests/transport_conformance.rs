//! One suite, every transport: echo, half-close, large writes in both directions, and what the other
//! end sees when one end is dropped.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

type Pair = (Box<dyn IoObj>, Box<dyn IoObj>);
trait IoObj: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: Io> IoObj for T {}

async fn echo(pair: Pair) {
    let (mut a, mut b) = pair;
    a.write_all(b"hello transport").await.expect("write");
    let mut buf = [0u8; 15];
    b.read_exact(&mut buf).await.expect("read");
    b.write_all(&buf).await.expect("echo");
    let mut back = [0u8; 15];
    a.read_exact(&mut back).await.expect("read back");
    assert_eq!(&back, b"hello transport");
}

async fn half_close(pair: Pair) {
    let (mut a, mut b) = pair;
    a.write_all(b"last words").await.expect("write");
    a.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.expect("read to end");
    assert_eq!(got, b"last words");
    // The other direction still works after the half-close.
    b.write_all(b"reply").await.expect("reply");
    b.shutdown().await.expect("shutdown b");
    let mut reply = Vec::new();
    a.read_to_end(&mut reply).await.expect("read reply");
    assert_eq!(reply, b"reply");
}

async fn large_writes(pair: Pair) {
    let (a, b) = pair;
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let expected = data.clone();
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let send_a = {
        let data = data.clone();
        async move {
            aw.write_all(&data).await.expect("a writes");
            aw.shutdown().await.expect("a shutdown");
        }
    };
    let send_b = async move {
        bw.write_all(&data).await.expect("b writes");
        bw.shutdown().await.expect("b shutdown");
    };
    let recv_a = async {
        let mut got = Vec::new();
        ar.read_to_end(&mut got).await.expect("a reads");
        got
    };
    let recv_b = async {
        let mut got = Vec::new();
        br.read_to_end(&mut got).await.expect("b reads");
        got
    };
    let ((), (), got_a, got_b) = tokio::join!(send_a, send_b, recv_a, recv_b);
    assert!(got_a == expected && got_b == expected, "data corrupted");
}

async fn drop_is_seen_by_the_peer(pair: Pair) {
    let (a, mut b) = pair;
    drop(a);
    let mut buf = [0u8; 8];
    // Either a clean EOF or an error, never a hang.
    match b.read(&mut buf).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("read {n} bytes from a dropped peer"),
    }
}

async fn run_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Pair>,
{
    echo(make().await).await;
    half_close(make().await).await;
    large_writes(make().await).await;
    drop_is_seen_by_the_peer(make().await).await;
}

async fn tcp_pair() -> Pair {
    let listener = missive::transport::tcp::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (a, b) = tokio::join!(
        missive::transport::tcp::connect(addr),
        missive::transport::tcp::accept(&listener)
    );
    let a = a.expect("connect");
    assert!(a.nodelay().expect("nodelay"));
    (Box::new(a), Box::new(b.expect("accept")))
}

async fn tls_pair() -> Pair {
    use missive::transport::tls;
    let cert = tls::SelfSigned::generate(&["localhost"]).expect("cert");
    let listener = missive::transport::tcp::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls::Acceptor::new(cert.server_config().expect("server cfg"));
    let (a, b) = tokio::join!(
        tls::connect(addr, "localhost", cert.client_config().expect("client cfg")),
        async {
            let tcp = missive::transport::tcp::accept(&listener)
                .await
                .expect("accept");
            acceptor.accept(tcp).await
        }
    );
    (Box::new(a.expect("client")), Box::new(b.expect("server")))
}

#[tokio::test]
async fn tcp_passes_the_transport_suite() {
    run_suite(tcp_pair).await;
}

#[tokio::test]
async fn tls_passes_the_transport_suite() {
    run_suite(tls_pair).await;
}

#[tokio::test]
async fn memory_passes_the_transport_suite() {
    run_suite(|| async {
        let (a, b) = missive::transport::memory::pair(64 * 1024);
        (Box::new(a) as Box<dyn IoObj>, Box::new(b) as Box<dyn IoObj>)
    })
    .await;
}

#[cfg(unix)]
#[tokio::test]
async fn unix_passes_the_transport_suite() {
    let dir = std::env::temp_dir().join(format!("missive-unix-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    run_suite(|| {
        let path = dir.join(format!(
            "s{}.sock",
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        async move {
            let listener = missive::transport::unix::bind(&path).expect("bind");
            let (a, b) = tokio::join!(missive::transport::unix::connect(&path), listener.accept());
            (
                Box::new(a.expect("connect")) as Box<dyn IoObj>,
                Box::new(b.expect("accept").0) as Box<dyn IoObj>,
            )
        }
    })
    .await;
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn tls_client_authentication_is_enforced() {
    use missive::transport::tls;
    let server_cert = tls::SelfSigned::generate(&["localhost"]).expect("server cert");
    let client_cert = tls::SelfSigned::generate(&["client"]).expect("client cert");
    let server_cfg = tls::server_config_with_client_auth(
        vec![server_cert.cert.clone()],
        server_cert.key.clone_key(),
        vec![client_cert.cert.clone()],
    )
    .expect("server cfg");
    let listener = missive::transport::tcp::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls::Acceptor::new(server_cfg);

    // With the right certificate: accepted.
    let with_auth = tls::client_config_with_client_auth(
        vec![server_cert.cert.clone()],
        vec![client_cert.cert.clone()],
        client_cert.key.clone_key(),
    )
    .expect("client cfg");
    let (client, server) = tokio::join!(tls::connect(addr, "localhost", with_auth), async {
        acceptor
            .accept(
                missive::transport::tcp::accept(&listener)
                    .await
                    .expect("accept"),
            )
            .await
    });
    let mut client = client.expect("client");
    let mut server = server.expect("server");
    client.write_all(b"x").await.expect("write");
    let mut one = [0u8; 1];
    server.read_exact(&mut one).await.expect("read");

    // Without one: the server refuses the handshake.
    let (_client, server) = tokio::join!(
        tls::connect(addr, "localhost", server_cert.client_config().expect("cfg")),
        async {
            acceptor
                .accept(
                    missive::transport::tcp::accept(&listener)
                        .await
                        .expect("accept"),
                )
                .await
        }
    );
    assert!(
        matches!(server, Err(tls::TlsError::Handshake(_))),
        "{server:?}"
    );
}

#[tokio::test]
async fn pem_files_load_and_errors_name_the_file() {
    use missive::transport::tls;
    let cert = tls::SelfSigned::generate(&["localhost"]).expect("cert");
    let dir = std::env::temp_dir().join(format!("missive-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
    std::fs::write(&key_path, &cert.key_pem).expect("write key");
    let certs = tls::load_certs(&cert_path).expect("certs");
    let key = tls::load_private_key(&key_path).expect("key");
    assert_eq!(certs, vec![cert.cert.clone()]);
    tls::server_config(certs, key).expect("config from PEM");

    let missing = tls::load_private_key(&cert_path).expect_err("no key in a cert file");
    assert!(
        matches!(missing, tls::TlsError::Missing { .. }),
        "{missing:?}"
    );
    let absent = tls::load_certs(dir.join("nope.pem")).expect_err("no file");
    assert!(absent.to_string().contains("nope.pem"), "{absent}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn tls_handshake_deadline_stops_a_silent_client() {
    use missive::transport::tls;
    let cert = tls::SelfSigned::generate(&["localhost"]).expect("cert");
    let acceptor = tls::Acceptor::new(cert.server_config().expect("cfg"))
        .with_handshake_timeout(std::time::Duration::from_millis(100));
    let (_silent, server_side) = tokio::io::duplex(1024);
    let result = acceptor.accept(server_side).await;
    assert!(
        matches!(result, Err(tls::TlsError::HandshakeTimeout(_))),
        "{result:?}"
    );
}
