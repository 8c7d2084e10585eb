//! Why the NATS edge could not start.

/// The NATS edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The URL (user info hidden) and why.
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
    /// A credential named in `[nats]` could not be read; `field` names the key, `detail` the
    /// fix. Never carries the secret.
    #[error("{field}: {detail}")]
    Credentials { field: &'static str, detail: String },
    #[error("cannot subscribe to {subject}: {detail}")]
    Subscribe { subject: String, detail: String },
}
