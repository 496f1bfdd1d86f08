//! `ferrops-engine` is the parameter server itself, independent of sockets and verbs: what a
//! server stores and how it applies pushes ([`store`], with its key → slot map and resolution
//! cache), the checks and signature of request key lists ([`key_list`]) and the per-connection
//! cache of lists sent by signature ([`key_list_cache`]), when a pull may be answered
//! ([`clock`], [`table::Consistency`]), who owns which keys ([`routing`]), the messages between
//! nodes and how they are sent ([`control`]), replication (each key range held by a chain of R
//! servers: the head applies a push and forwards it, `server/chain.rs`; a dead server's ranges
//! fail over to the next of their chains, `scheduler/failover.rs`, and workers resend under the
//! new routing, `worker/failover.rs`), surviving the scheduler's loss (nodes go on and redial
//! it, `reconnect.rs`, and a scheduler started with `--recover` rebuilds the job from their
//! reports, `scheduler/recover.rs`), tables on disk ([`checkpoint`]: written by the servers at
//! a consistent clock, restored on any number of servers), and the three roles —
//! [`server::run_server`], [`scheduler::run_scheduler`] and the worker API [`worker::Worker`].
//! Frames travel through
//! `ferrops-net`, which owns every connection, poller and wait: the servers' and scheduler's
//! event loop, the worker's client driver (the worker keeps only its requests and what to do
//! with the replies), dialing, and interface discovery. Memory the
//! peer may write is registered through `ferrops_net::Link` without naming a transport. Updates
//! are computed by `ferrops-kernels`.
//!
//! Where things go: each role is a folder or file of its own that only meets the others
//! through [`control`] messages and frames — `server/` (shards, admission, request admission
//! and ownership, push, pull, report), `worker/` (one request planner shared by push and pull,
//! the pending requests, what to do with what arrives) and `scheduler.rs`; a new role is a new
//! [`Role`] variant (at the end: its index is on the wire) and a module beside them. A new
//! control message is a [`control::Control`] variant; a new request-level check of a push or
//! pull goes in `server/request.rs` (for both) or `server/push.rs` / `server/pull.rs`.

// Unsafe code only in the modules marked `#[allow(unsafe_code)]` below, each saying why.
#![deny(unsafe_code)]

pub mod checkpoint;
pub mod clock;
pub mod config;
mod connect;
pub mod control;
pub mod ctl;
mod error;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod key_list;
pub mod key_list_cache;
pub mod liveness;
#[allow(unsafe_code)] // mmap, mlock, mbind of parameter segments
pub mod memory;
pub mod metrics;
mod reconnect;
pub mod role;
pub mod routing;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod table;
mod transport;
pub mod worker;

pub use error::EngineError;
pub use key_list::KeyList;
pub use role::Role;
pub use table::{Consistency, KeyLayout, TableId, TableSpec};
pub use worker::{Completed, Ticket, Worker, WorkerInfo, SIGNED_MIN_KEYS};
