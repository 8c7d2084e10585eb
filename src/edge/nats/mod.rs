//! The NATS edge (docs/nats.md): ingress on `{prefix}.ingress.{env}.{tenant}.{team}.{channel}`,
//! acks on the reply subject after the durable append, replies published on the matching egress
//! subject.
//!
//! Invariants:
//! - a subject is parsed into validated ids before anything else; a malformed subject or payload
//!   is counted, logged with whatever is known of its tenant, answered with an error when it has
//!   a reply subject, and never reaches any tenant;
//! - a message for a tenant this instance does not serve is ignored without a reply (another
//!   instance may serve it: hybrid deployments share one NATS), and so is one, in a cluster, for
//!   a tenant another node owns or no node owns yet (`Runtime::handles_here`): every node
//!   receives it, the owner alone answers;
//! - an ack (`{"session","seq"}`) is sent only after the message's events are durable; a retry
//!   with the same `message_id` or `Nats-Msg-Id` appends nothing and gets the first ack;
//! - a message for a served tenant is charged to that tenant's quota (the one HTTP charges too)
//!   before its payload is parsed; over quota it is refused with `quota_exceeded` (replied when
//!   it has a reply subject, counted per tenant) and never reaches the runtime, whose in-flight
//!   budget is shared out per tenant as well;
//! - a subject's messages are handed to the runtime in arrival order; at most `IN_FLIGHT_MAX`
//!   await their ack at once, so a burst cannot grow memory without bound.
//!
//! Files: `ingress` (subscribe, validate, charge the quota, hand to the runtime, ack),
//! `egress` (publish the runtime's replies), `subject` (subjects ↔ validated ids), `connect`
//! (log in with the `[nats]` credentials), `metrics` (the NATS families and connection state),
//! `error` (`NatsError`: why the edge could not start).

mod connect;
mod egress;
mod error;
pub mod ingress;
pub mod metrics;
pub mod subject;

pub use self::connect::connect;

pub use self::egress::{egress_channel, publish_egress, EGRESS_QUEUE};
pub use self::error::NatsError;
pub use self::ingress::{Ingress, IN_FLIGHT_MAX, PAYLOAD_BYTES_MAX};
pub use self::metrics::{NatsEvent, NatsMetrics};
