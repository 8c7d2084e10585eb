//! What the API listener and the metrics listener share: connection timeouts, the bind errors,
//! and a running server's lifecycle (`Running`: wait, graceful stop).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};

/// Time a client has to send a request's head after connecting (or between keep-alive
/// requests, once the keep-alive period has passed).
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time after which a keep-alive connection is closed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Time to finish closing a connection.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Graceful stop: in-flight requests get this long to finish.
pub const SHUTDOWN_TIMEOUT_S: u64 = 10;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address is taken, not local, or not permitted. Fix `server.listen`.
    #[error("cannot listen on {addr} (server.listen)")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS's reason.
        source: io::Error,
    },
    /// The metrics address is taken (another instance on this host?), not local, or not
    /// permitted. Give each instance its own `server.metrics_listen`, or `"off"`.
    #[error(
        "cannot serve /metrics on {addr} (server.metrics_listen): give this instance a port of \
         its own, port 0 for any free one, or \"off\""
    )]
    MetricsBind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS's reason.
        source: io::Error,
    },
}

/// Applies the connection timeouts and graceful-stop period both listeners share to an
/// `actix_web::HttpServer`, with signals left to the caller. A macro because the server's type
/// parameters are bounded by traits actix does not re-export.
macro_rules! with_connection_limits {
    ($server:expr) => {
        $server
            .keep_alive($crate::edge::http::listener::KEEP_ALIVE)
            .client_request_timeout($crate::edge::http::listener::CLIENT_REQUEST_TIMEOUT)
            .client_disconnect_timeout($crate::edge::http::listener::CLIENT_DISCONNECT_TIMEOUT)
            .shutdown_timeout($crate::edge::http::listener::SHUTDOWN_TIMEOUT_S)
            .disable_signals()
    };
}
pub(super) use with_connection_limits;

/// A bound server running on the actix system.
pub(super) struct Running {
    handle: ServerHandle,
    task: actix_rt::task::JoinHandle<io::Result<()>>,
    /// Set once `task` has been awaited to completion (a finished handle must not be polled).
    finished: bool,
    /// The bound addresses (with the real port when the configured one was 0).
    pub(super) addrs: Vec<SocketAddr>,
}

impl Running {
    /// Spawns `server` (bound to `addrs`) on the current actix system.
    pub(super) fn spawn(server: Server, addrs: Vec<SocketAddr>) -> Running {
        let handle = server.handle();
        let task = actix_rt::spawn(server);
        Running {
            handle,
            task,
            finished: false,
            addrs,
        }
    }

    /// Resolves if the server stops by itself (it should not): with its error, if any.
    pub(super) async fn wait(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        let result = (&mut self.task).await;
        self.finished = true;
        result.unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Graceful stop: stop accepting connections, let in-flight requests finish (at most
    /// [`SHUTDOWN_TIMEOUT_S`]); `what` names the server in a warning if it ended with an error.
    pub(super) async fn stop(self, what: &str) {
        self.handle.stop(true).await;
        if self.finished {
            return;
        }
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "{what} stopped with an error");
        }
    }
}
