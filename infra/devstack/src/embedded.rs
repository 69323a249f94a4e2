//! Dynoxide, the SQLite-backed DynamoDB emulator, served over HTTP from this process.
//! The server runs on its own thread and runtime, so it outlives any one test runtime
//! and the code under test talks to it through the real SDK and HTTP stack.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub struct EmbeddedDynamo {
    pub endpoint: String,
    /// The database itself, for what only an emulator can do (run a TTL sweep now).
    pub database: dynoxide::Database,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedDynamo {
    /// An in-memory database on a free loopback port.
    pub fn start() -> std::io::Result<Self> {
        Self::start_on(0)
    }

    /// An in-memory database on `port` of the loopback address (0 picks a free one).
    pub fn start_on(port: u16) -> std::io::Result<Self> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// An in-memory database served at `address`.
    pub fn start_at(address: SocketAddr) -> std::io::Result<Self> {
        let database = dynoxide::Database::memory().map_err(|e| std::io::Error::other(e.to_string()))?;
        let listener = std::net::TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let served = database.clone();
        let thread = std::thread::Builder::new().name("dynoxide".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a Tokio runtime for the emulator");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(error) = dynoxide::server::serve_with_shutdown(listener, served, shutdown).await {
                    eprintln!("dynoxide stopped: {error}");
                }
            });
        })?;
        Ok(Self {
            endpoint,
            database,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Deletes expired items now, as DynamoDB TTL does eventually. Returns how many.
    pub fn run_ttl_sweep(&self) -> usize {
        self.database.sweep_ttl().unwrap_or(0)
    }
}

impl Drop for EmbeddedDynamo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
