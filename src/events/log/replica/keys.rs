//! The key home of a `[cluster]`: the secrets that every node must hold alike (the tenants'
//! key encryption keys and pseudonym keys, the chain head key) kept in a second JetStream
//! stream beside the log, `{stream}_KEYS`, sealed under the *cluster key* that every node is
//! given (`crate::cluster::key`). A node's own secret store would not do: a tenant moves to
//! another node when its owner dies, and that node must open the tenant's sealed events and
//! destroy its keys on an erasure.
//!
//! - One subject per secret: `{stream}_KEYS.t.{tenant}.{name}` for a tenant's,
//!   `{stream}_KEYS.g.{name}` for a global one, and `{stream}_KEYS.check`, whose value proves
//!   that this node's cluster key is the one the others use.
//! - A value is `seal(cluster key, "tenantry cluster secret v1\0" ++ subject, secret)`, so a
//!   value copied to another subject does not open.
//! - Replacing or deleting a secret removes its older messages with JetStream's *erase* (the
//!   servers overwrite the message in their files on every replica, not just unlink it), so a
//!   destroyed KEK does not linger in the stream's message files. The servers' raft logs (a
//!   replicated stream) hold the publish until nats-server compacts them after its next
//!   snapshot of the stream; ARCHITECTURE.md says so.
//! - The stream holds no log record and the log stream no secret: `{stream}_KEYS.>` and
//!   `{stream}.*` share no subject.
//!
//! The calls block the calling thread (any thread, an async runtime's too) until the stream
//! answers, at most [`KEYS_WAIT`]: they run on the replica's runtime and are waited for on a
//! channel.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use zeroize::Zeroizing;

use super::{Replica, ReplicaError};
use crate::events::seal::{self, DataKey};

/// Longest wait for one call of the key home (a few requests to the stream).
pub const KEYS_WAIT: Duration = Duration::from_secs(15);
/// Domain label at the start of a shared secret's associated data.
const SHARED_AAD_LABEL: &[u8] = b"tenantry cluster secret v1\0";
/// What the check subject's value seals.
const CHECK_PLAINTEXT: &[u8] = b"tenantry cluster key check v1";

/// Why the key home failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedKeyError {
    /// The stream answered with an error, or not in time.
    #[error("the key stream {stream}: {detail}")]
    Stream { stream: String, detail: String },
    /// A value does not open under this node's cluster key.
    #[error(
        "the key stream's {subject} does not open under this node's cluster key: give every node \
         the same key (env TENANTRY_CLUSTER_KEY or {{data_dir}}/cluster.key)"
    )]
    WrongKey { subject: String },
    /// A secret being copied in finds another value there.
    #[error("the key stream's {subject} already holds another value (another tenant of that id?); nothing was replaced")]
    Taken { subject: String },
}

/// A subject's last value: its stream sequence and the opened secret.
type Stored = (u64, Zeroizing<Vec<u8>>);

/// Whether a secret was made here or found ([`SharedKeys::create`]).
pub enum Created {
    Made,
    Found(Zeroizing<Vec<u8>>),
}

/// The key home of a cluster (see the module doc).
pub struct SharedKeys {
    /// The replica's runtime, kept running while this lives.
    rt: std::sync::Arc<super::ClientRuntime>,
    js: jetstream::Context,
    stream: stream::Stream,
    name: String,
    key: DataKey,
}

impl std::fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKeys")
            .field("stream", &self.name)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens (creating it unless it exists) the key stream beside this replica's log, with
    /// the log's replicas, and checks that `key` is the cluster key the other nodes use.
    pub fn shared_keys(&self, key: DataKey) -> Result<SharedKeys, ReplicaError> {
        let name = format!("{}_KEYS", self.name);
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        };
        let js = self.js.clone();
        let stream = self
            .block_on(async move { js.get_or_create_stream(config).await })
            .map_err(|e| ReplicaError::Stream {
                stream: name.clone(),
                detail: format!("cannot create or open the key stream: {e}"),
            })?;
        let keys = SharedKeys {
            rt: self.rt.clone(),
            js: self.js.clone(),
            stream,
            name,
            key,
        };
        keys.check().map_err(|e| ReplicaError::Stream {
            stream: keys.name.clone(),
            detail: e.to_string(),
        })?;
        Ok(keys)
    }
}

impl SharedKeys {
    /// The subject of tenant `tenant`'s secret `name`.
    pub fn tenant_subject(&self, tenant: &str, name: &str) -> String {
        format!("{}.t.{tenant}.{name}", self.name)
    }

    /// The subject of the global secret `name`.
    pub fn global_subject(&self, name: &str) -> String {
        format!("{}.g.{name}", self.name)
    }

    /// Proves the cluster key against the check value, storing it when there is none yet.
    fn check(&self) -> Result<(), SharedKeyError> {
        let subject = format!("{}.check", self.name);
        match self.create(&subject, CHECK_PLAINTEXT)? {
            Created::Made => Ok(()),
            Created::Found(v) if v.as_slice() == CHECK_PLAINTEXT => Ok(()),
            Created::Found(_) => Err(SharedKeyError::WrongKey { subject }),
        }
    }

    /// The secret at `subject`, if any.
    pub fn get(&self, subject: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SharedKeyError> {
        Ok(self.last(subject)?.map(|(_, value)| value))
    }

    /// Stores `value` at `subject` unless a value is there: then that one is kept and returned
    /// (two nodes making the same key agree on the first one stored).
    pub fn create(&self, subject: &str, value: &[u8]) -> Result<Created, SharedKeyError> {
        match self.publish(subject, value, Some(0))? {
            Some(_) => Ok(Created::Made),
            None => match self.last(subject)? {
                Some((_, found)) => Ok(Created::Found(found)),
                None => Err(self.error(format!("{subject} was refused as taken but is empty"))),
            },
        }
    }

    /// Stores `value` at `subject`, then erases the subject's older values.
    pub fn set(&self, subject: &str, value: &[u8]) -> Result<(), SharedKeyError> {
        let Some(seq) = self.publish(subject, value, None)? else {
            return Err(self.error(format!("{subject}: the stream refused the value")));
        };
        self.erase_before(subject, seq)?;
        Ok(())
    }

    /// Erases every value of `subject`; whether there was one.
    pub fn delete(&self, subject: &str) -> Result<bool, SharedKeyError> {
        self.erase_before(subject, u64::MAX)
    }

    fn error(&self, detail: String) -> SharedKeyError {
        SharedKeyError::Stream {
            stream: self.name.clone(),
            detail,
        }
    }

    fn aad(subject: &str) -> Vec<u8> {
        [SHARED_AAD_LABEL, subject.as_bytes()].concat()
    }

    /// Runs `future` on the replica's runtime and waits for it, at most [`KEYS_WAIT`].
    fn run<T, F>(&self, future: F) -> Result<T, SharedKeyError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, String>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.handle().spawn(async move {
            let _ = tx.send(future.await);
        });
        match rx.recv_timeout(KEYS_WAIT) {
            Ok(result) => result.map_err(|detail| self.error(detail)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(self.error(format!("no answer within {KEYS_WAIT:?}")))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(self.error("the connection's runtime stopped".into()))
            }
        }
    }

    /// The last value of `subject` with its stream sequence, opened.
    fn last(&self, subject: &str) -> Result<Option<Stored>, SharedKeyError> {
        let stream = self.stream.clone();
        let at = subject.to_owned();
        let found = self.run(async move {
            match stream.get_last_raw_message_by_subject(&at).await {
                Ok(message) => Ok(Some((message.sequence, message.payload))),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(format!("reading {at}: {e}")),
            }
        })?;
        let Some((seq, sealed)) = found else {
            return Ok(None);
        };
        let value = seal::open(&self.key, &SharedKeys::aad(subject), &sealed).map_err(|_| {
            SharedKeyError::WrongKey {
                subject: subject.to_owned(),
            }
        })?;
        Ok(Some((seq, value)))
    }

    /// Publishes `value` sealed at `subject` and waits for the ack; with `expected`, only when
    /// that is the subject's last sequence (0: empty), else `None`.
    fn publish(
        &self,
        subject: &str,
        value: &[u8],
        expected: Option<u64>,
    ) -> Result<Option<u64>, SharedKeyError> {
        let sealed = seal::seal(&self.key, &SharedKeys::aad(subject), value);
        let js = self.js.clone();
        let at = subject.to_owned();
        self.run(async move {
            match super::publish::publish_expecting(&js, &at, sealed, expected).await {
                Ok(sequence) => Ok(Some(sequence)),
                Err(super::publish::Refused::WrongLast) => Ok(None),
                Err(super::publish::Refused::Failed(detail)) => {
                    Err(format!("publishing {at}: {detail}"))
                }
            }
        })
    }

    /// Erases the values of `subject` stored before stream sequence `before`; whether any.
    fn erase_before(&self, subject: &str, before: u64) -> Result<bool, SharedKeyError> {
        let stream = self.stream.clone();
        let at = subject.to_owned();
        self.run(async move {
            let mut erased = false;
            loop {
                let seq = match stream.get_first_raw_message_by_subject(&at, 1).await {
                    Ok(message) if message.sequence < before => message.sequence,
                    Ok(_) => return Ok(erased),
                    Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                        return Ok(erased)
                    }
                    Err(e) => return Err(format!("reading {at}: {e}")),
                };
                // `delete_message` asks for the server's erase (no `no_erase`): the message
                // is overwritten on every replica.
                stream
                    .delete_message(seq)
                    .await
                    .map_err(|e| format!("erasing {at} at stream sequence {seq}: {e}"))?;
                erased = true;
            }
        })
    }
}

#[cfg(test)]
mod tests;
