//! A stand-in for the Lambda Runtime API, on axum (the HTTP server the embedded emulator
//! and devstack's Twilio stand-in already build). Every request a function makes is handed
//! to the measurement with the moment it arrived; the measurement decides the reply, or
//! holds it, as Lambda holds `GET …/invocation/next` until there is an event.

use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bench::Failure;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// What a function asked the Runtime API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `GET /2018-06-01/runtime/invocation/next`: the next event, please.
    Next,
    /// `POST /2018-06-01/runtime/invocation/{id}/response`.
    Response(String),
    /// `POST /2018-06-01/runtime/invocation/{id}/error`.
    Error(String),
    /// `POST /2018-06-01/runtime/init/error`.
    InitError,
    /// Anything else: not what a Lambda runtime sends.
    Unexpected,
}

/// One request of the function, held until the measurement replies (or drops it).
pub struct RuntimeRequest {
    pub call: Call,
    method: Method,
    path: String,
    /// When its head arrived (before its body is read).
    pub at: Instant,
    reply: oneshot::Sender<Response>,
}

impl RuntimeRequest {
    /// The answer to `/next`: `payload` as invocation `request_id`, with the headers Lambda
    /// sends and a deadline five minutes away.
    pub fn send_event(self, request_id: &str, payload: &Value) {
        let deadline_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            + 300_000;
        let headers = [
            (header::CONTENT_TYPE.as_str(), "application/json".to_owned()),
            ("lambda-runtime-aws-request-id", request_id.to_owned()),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-west-3:000000000000:function:bench".to_owned(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
            ),
        ];
        let _ = self.reply.send((headers, payload.to_string()).into_response());
    }

    /// The answer to a response or an error: 202, as Lambda acknowledges them.
    pub fn accept(self) {
        let accepted = (StatusCode::ACCEPTED, Body::from("{\"status\":\"OK\"}\n")).into_response();
        let _ = self.reply.send(accepted);
    }

    /// Whether this is the response (not an error) of invocation `request_id`.
    pub fn is_response_to(&self, request_id: &str) -> bool {
        matches!(&self.call, Call::Response(id) if id == request_id)
    }
}

/// As `GET /path`, for messages.
impl fmt::Display for RuntimeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The stand-in, listening on 127.0.0.1; stops when dropped.
pub struct RuntimeApi {
    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` gives it.
    address: String,
    requests: mpsc::UnboundedReceiver<RuntimeRequest>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let (tx, requests) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next).fallback(unexpected))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response).fallback(unexpected),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(error).fallback(unexpected),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error).fallback(unexpected))
            .fallback(unexpected)
            .with_state(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("the Runtime API stand-in stopped: {error}");
            }
        });
        Ok(Self {
            address,
            requests,
            server,
        })
    }

    /// Starts `binary` as Lambda would, with only `env` and this Runtime API in its
    /// environment; killed when the handle is dropped.
    pub fn spawn(&self, binary: &Path, env: &[(String, String)]) -> std::io::Result<tokio::process::Child> {
        tokio::process::Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", &self.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
    }

    /// The next request of the function, or the error `silent` describes if none comes
    /// `within`.
    pub async fn recv(&mut self, within: Duration, silent: impl FnOnce() -> String) -> Result<RuntimeRequest, Failure> {
        match tokio::time::timeout(within, self.requests.recv()).await {
            Ok(Some(request)) => Ok(request),
            Ok(None) => Err("the Runtime API stand-in stopped".into()),
            Err(_) => Err(silent().into()),
        }
    }

    /// Drops what arrives until `quiet` passes without a request (the pending `/next` of a
    /// killed process).
    pub async fn drain(&mut self, quiet: Duration) {
        while let Ok(Some(_)) = tokio::time::timeout(quiet, self.requests.recv()).await {}
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Requests = State<mpsc::UnboundedSender<RuntimeRequest>>;

async fn next(State(tx): Requests, request: Request) -> Response {
    forward(Instant::now(), Call::Next, tx, request).await
}

async fn response(State(tx): Requests, UrlPath(id): UrlPath<String>, request: Request) -> Response {
    forward(Instant::now(), Call::Response(id), tx, request).await
}

async fn error(State(tx): Requests, UrlPath(id): UrlPath<String>, request: Request) -> Response {
    forward(Instant::now(), Call::Error(id), tx, request).await
}

async fn init_error(State(tx): Requests, request: Request) -> Response {
    forward(Instant::now(), Call::InitError, tx, request).await
}

async fn unexpected(State(tx): Requests, request: Request) -> Response {
    forward(Instant::now(), Call::Unexpected, tx, request).await
}

/// Reads the body (so that the connection can carry the next request), hands the request
/// to the measurement and waits for its reply.
async fn forward(at: Instant, call: Call, tx: mpsc::UnboundedSender<RuntimeRequest>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let _ = axum::body::to_bytes(body, usize::MAX).await;
    let (reply, replied) = oneshot::channel();
    let request = RuntimeRequest {
        call,
        method: parts.method,
        path: parts.uri.path().to_owned(),
        at,
        reply,
    };
    if tx.send(request).is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // A request the measurement dropped (the `/next` of a process it killed) gets a 503;
    // nobody reads it.
    replied
        .await
        .unwrap_or_else(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// The stand-in's answer on `stream`: head and body, as text.
    async fn read_response(stream: &mut TcpStream) -> String {
        let mut received = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ")?.parse().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed after {text:?}");
            received.extend_from_slice(&chunk[..n]);
        }
    }

    async fn request(api: &mut RuntimeApi, stream: &mut TcpStream, head: &str, body: &str) -> RuntimeRequest {
        let request = format!(
            "{head} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("sent");
        api.recv(Duration::from_secs(5), || format!("{head}: not handed over"))
            .await
            .expect("handed over")
    }

    #[tokio::test]
    async fn a_runtime_polls_gets_its_event_and_posts_its_response() {
        let mut api = RuntimeApi::start().await.expect("started");
        let mut stream = TcpStream::connect(&api.address).await.expect("connected");
        let next = request(&mut api, &mut stream, "GET /2018-06-01/runtime/invocation/next", "").await;
        assert_eq!(
            (next.call.clone(), next.to_string().as_str()),
            (Call::Next, "GET /2018-06-01/runtime/invocation/next")
        );
        next.send_event("req-1", &json!({"dryRun": true}));
        let event = read_response(&mut stream).await.to_ascii_lowercase();
        assert!(event.starts_with("http/1.1 200"), "{event}");
        for header in [
            "lambda-runtime-aws-request-id: req-1",
            "lambda-runtime-deadline-ms: ",
            "lambda-runtime-invoked-function-arn: arn:aws:lambda:eu-west-3:000000000000:function:bench",
            "lambda-runtime-trace-id: root=1-",
            "content-type: application/json",
        ] {
            assert!(event.contains(header), "{header} in {event}");
        }
        assert!(event.ends_with("\r\n\r\n{\"dryrun\":true}"), "{event}");

        let answer = request(
            &mut api,
            &mut stream,
            "POST /2018-06-01/runtime/invocation/req-1/response",
            "{}",
        )
        .await;
        assert!(answer.is_response_to("req-1") && !answer.is_response_to("req-2"));
        answer.accept();
        let accepted = read_response(&mut stream).await;
        assert!(
            accepted.starts_with("HTTP/1.1 202") && accepted.ends_with("{\"status\":\"OK\"}\n"),
            "{accepted}"
        );

        for (head, call) in [
            (
                "POST /2018-06-01/runtime/invocation/req-2/error",
                Call::Error("req-2".into()),
            ),
            ("POST /2018-06-01/runtime/init/error", Call::InitError),
            ("POST /2018-06-01/runtime/invocation/next", Call::Unexpected),
            ("GET /elsewhere", Call::Unexpected),
        ] {
            let received = request(&mut api, &mut stream, head, "{\"errorType\":\"x\"}").await;
            assert_eq!(received.call, call, "{head}");
            received.accept();
            read_response(&mut stream).await;
        }
    }
}
