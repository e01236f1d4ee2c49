//! `rpc` against a real server whose `/ws/chat` has an rpc hook, answered
//! by an application on a port of its own (an axum app): results, refusals
//! with the application's reason, an endpoint without hooks, the client's
//! own timeout, and a call in flight when the connection drops (the client
//! fails it, does not send it again, and goes on after reconnecting).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard::axum::extract::State;
use switchboard::axum::http::StatusCode;
use switchboard::axum::response::{IntoResponse, Response};
use switchboard::axum::routing::post;
use switchboard::axum::{Json, Router};
use switchboard::hooks::{Application, Hook, HttpHooks};
use switchboard::{Endpoint, Node};
use switchboard_client::{ClientBuilder, ErrorCode, Event, RequestError};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

const SECRET: &[u8] = b"client-rpc-test-secret-0123456789";

/// The application: records every rpc request, answers by method. `hang`
/// reports its arrival and never answers (the hook's timeout is long).
#[derive(Clone)]
struct App {
    calls: Arc<Mutex<Vec<Value>>>,
    hung: mpsc::UnboundedSender<()>,
}

impl App {
    fn methods(&self) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .map(|c| c["method"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn rpc_hook(State(app): State<App>, Json(req): Json<Value>) -> Response {
    app.calls.lock().unwrap().push(req.clone());
    let data = &req["data"];
    match req["method"].as_str().unwrap_or_default() {
        "add" => {
            let sum = data["a"].as_i64().unwrap_or(0) + data["b"].as_i64().unwrap_or(0);
            Json(json!({"data": sum})).into_response()
        }
        "whoami" => Json(json!({"data": req["client"]})).into_response(),
        "echo" => Json(json!({"data": data})).into_response(),
        "nothing" => Json(json!({})).into_response(),
        "orders.cancel" => (
            StatusCode::CONFLICT,
            Json(json!({
                "message": format!("order {} has shipped", data["order"]),
                "reason": "shipped",
            })),
        )
            .into_response(),
        "no_reason" => (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "not for you"})),
        )
            .into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Json(json!({"data": "late"})).into_response()
        }
        "hang" => {
            let _ = app.hung.send(());
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

struct Setup {
    server: Server,
    app: App,
    hung: mpsc::UnboundedReceiver<()>,
}

/// The application, and a server whose `/ws/chat` has an rpc hook calling
/// it; `/ws/plain` has no hooks.
async fn setup() -> Setup {
    let (hung_tx, hung) = mpsc::unbounded_channel();
    let app = App {
        calls: Arc::default(),
        hung: hung_tx,
    };
    let router = Router::new()
        .route("/hooks/rpc", post(rpc_hook))
        .with_state(app.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks/rpc", listener.local_addr().expect("addr"));
    tokio::spawn(async move { switchboard::axum::serve(listener, router).await });

    let application = Application::new(SECRET, 8).expect("a valid application");
    let hooks = HttpHooks::new(application).rpc(Hook::new(url).timeout(Duration::from_secs(20)));
    let builder = Node::builder()
        .endpoint(Endpoint::chat("/ws/chat").hooks(hooks))
        .endpoint(Endpoint::chat("/ws/plain"));
    Setup {
        server: Server::start_with(builder).await,
        app,
        hung,
    }
}

#[tokio::test]
async fn an_rpc_returns_the_applications_answer() {
    let s = setup().await;
    let (client, mut events) = ClientBuilder::new(s.server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    let user = until(&mut events, |e| match e {
        Event::Connected { user, .. } => Some(user.clone()),
        _ => None,
    })
    .await;

    let sum = client
        .rpc("add", &json!({"a": 2, "b": 3}))
        .await
        .expect("a result");
    assert_eq!(sum.get(), "5");
    // Typed, both ways.
    #[derive(serde::Serialize)]
    struct Terms {
        a: i64,
        b: i64,
    }
    let sum: i64 = client
        .rpc_json("add", &Terms { a: 40, b: 2 })
        .await
        .expect("a result");
    assert_eq!(sum, 42);
    // The application learns who asks from the server, never from the frame.
    #[derive(Deserialize)]
    struct Caller {
        user: String,
        conn: String,
        data: Value,
    }
    let me: Caller = client.rpc_json("whoami", &()).await.expect("a result");
    assert_eq!((me.user.as_str(), me.data), (user.as_str(), Value::Null));
    assert!(!me.conn.is_empty());
    // No data is `null`; an answer without data is `null`.
    assert_eq!(
        client.rpc("echo", &()).await.expect("a result").get(),
        "null"
    );
    assert_eq!(
        client
            .rpc("nothing", &json!([1]))
            .await
            .expect("a result")
            .get(),
        "null"
    );
    // An answer that is not the type asked for: the call did happen.
    let wrong = client
        .rpc_json::<String, _>("add", &json!({"a": 1, "b": 1}))
        .await;
    assert!(matches!(wrong, Err(RequestError::Decode(_))), "{wrong:?}");
    // A long timeout of its own is fine.
    let echoed = client
        .rpc_with_timeout("echo", &json!({"k": [1, 2]}), Duration::from_secs(30))
        .await
        .expect("a result");
    assert_eq!(
        serde_json::from_str::<Value>(echoed.get()).unwrap(),
        json!({"k": [1, 2]})
    );
    assert_eq!(
        s.app.methods(),
        ["add", "add", "whoami", "echo", "nothing", "add", "echo"]
    );
    client.close().await;
}

#[tokio::test]
async fn refusals_carry_the_code_message_and_reason() {
    let s = setup().await;
    let (client, _events) = ClientBuilder::new(s.server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");

    let e = client
        .rpc("orders.cancel", &json!({"order": 7}))
        .await
        .expect_err("refused");
    let RequestError::Rejected(server) = &e else {
        panic!("{e:?}");
    };
    assert_eq!(server.kind(), Some(ErrorCode::Refused));
    assert_eq!(
        (
            server.code.as_str(),
            server.message.as_str(),
            server.reason.as_deref()
        ),
        ("refused", "order 7 has shipped", Some("shipped"))
    );
    assert_eq!((e.code(), e.reason()), (Some("refused"), Some("shipped")));
    assert!(e.to_string().contains("(reason: shipped)"), "{e}");

    let e = client
        .rpc("no_reason", &json!(null))
        .await
        .expect_err("refused");
    assert_eq!(
        (e.code(), e.reason(), e.to_string().as_str()),
        (
            Some("refused"),
            None,
            "request refused: refused: not for you"
        )
    );
    // A 4xx without a body is a refusal too.
    let e = client.rpc("missing", &1).await.expect_err("refused");
    assert_eq!(e.code(), Some("refused"));

    // A method name the protocol does not allow never reaches the application.
    let e = client.rpc("has space", &1).await.expect_err("refused");
    assert_eq!(e.code(), Some("invalid_field"), "{e}");
    assert_eq!(s.app.methods(), ["orders.cancel", "no_reason", "missing"]);

    // The connection is still fine.
    let sum = client.rpc("add", &json!({"a": 1, "b": 1})).await;
    assert_eq!(sum.expect("a result").get(), "2");
}

#[tokio::test]
async fn an_endpoint_without_hooks_answers_unknown_type() {
    let s = setup().await;
    let (client, _events) = ClientBuilder::new(s.server.url("/ws/plain"))
        .connect()
        .await
        .expect("connected");
    let e = client
        .rpc("add", &json!({"a": 2, "b": 3}))
        .await
        .expect_err("no rpc here");
    let RequestError::Rejected(server) = &e else {
        panic!("{e:?}");
    };
    assert_eq!(server.kind(), Some(ErrorCode::UnknownType));
    assert_eq!(server.reason, None);
    assert!(s.app.methods().is_empty());
    // The rest of the protocol works on it.
    client.join("lobby").await.expect("joined");
}

#[tokio::test]
async fn an_rpc_unanswered_within_its_timeout_fails_with_timeout() {
    let s = setup().await;
    let (client, _events) = ClientBuilder::new(s.server.url("/ws/chat"))
        .connect()
        .await
        .expect("connected");
    let wait = Duration::from_millis(200);
    let e = client
        .rpc_with_timeout("slow", &(), wait)
        .await
        .expect_err("too slow");
    assert_eq!(e, RequestError::Timeout(wait));
    // The server handles a connection's frames in order: the next call is
    // answered after the slow one, whose late result is dropped.
    let sum = client.rpc("add", &json!({"a": 1, "b": 2})).await;
    assert_eq!(sum.expect("a result").get(), "3");
}

#[tokio::test]
async fn an_rpc_in_flight_when_the_connection_drops_fails_and_is_not_sent_again() {
    let mut s = setup().await;
    let proxy = Proxy::start(s.server.addr).await;
    let (client, mut events) = ClientBuilder::new(format!("ws://{}/ws/chat", proxy.addr))
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .connect()
        .await
        .expect("connected");

    let call = tokio::spawn({
        let client = client.clone();
        async move { client.rpc("hang", &json!({"n": 1})).await }
    });
    tokio::time::timeout(WAIT, s.hung.recv())
        .await
        .expect("the application got the call")
        .expect("open");
    proxy.cut();
    let result = tokio::time::timeout(WAIT, call)
        .await
        .expect("the rpc does not hang")
        .expect("task");
    assert_eq!(result.err(), Some(RequestError::ConnectionLost));
    let code = until(&mut events, |e| match e {
        Event::Disconnected { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code.0, 1006, "no close frame");

    // Reconnected (through the proxy, which still accepts): the lost call
    // was not sent again, and new calls work.
    until(&mut events, |e| {
        matches!(e, Event::Connected { .. }).then_some(())
    })
    .await;
    let sum = client.rpc("add", &json!({"a": 2, "b": 2})).await;
    assert_eq!(sum.expect("a result").get(), "4");
    assert_eq!(s.app.methods(), ["hang", "add"]);

    // While disconnected an rpc fails at once instead of waiting.
    proxy.go_down();
    proxy.cut();
    until(&mut events, |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let e = client.rpc("add", &json!({"a": 2, "b": 2})).await;
    assert_eq!(e.err(), Some(RequestError::NotConnected));
    assert_eq!(s.app.methods(), ["hang", "add"]);
    client.close().await;
}

/// A TCP proxy in front of the server whose connections can be cut at
/// once, as a network failure would: no close frame, the client sees the
/// stream end.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<Notify>,
    down: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(Notify::new());
        let cutter = cut.clone();
        let down = Arc::new(AtomicBool::new(false));
        let refusing = down.clone();
        tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut down, _)) = accepted else { return };
                        if refusing.load(Ordering::SeqCst) {
                            continue;
                        }
                        conns.spawn(async move {
                            if let Ok(mut up) = TcpStream::connect(upstream).await {
                                let _ = copy_bidirectional(&mut down, &mut up).await;
                            }
                        });
                    }
                    () = cutter.notified() => conns.abort_all(),
                }
            }
        });
        Proxy { addr, cut, down }
    }

    /// From now on, drops new connections at once: the server seems down.
    fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Drops every connection open now; new ones are still accepted.
    fn cut(&self) {
        self.cut.notify_one();
    }
}
