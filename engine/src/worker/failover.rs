//! Failover on the worker's side. When a server that replication covers dies, the scheduler
//! publishes a newer routing (`Control::Routing`): the dead server's requests fail with
//! `ServerLost` (its connection closed, or the routing no longer names it — a stopped server
//! keeps its connection open), and a server asked under an older routing answers `NotOwner`, or
//! `Unavailable` when the rest of the chain was lost under a push. A blocking call that fails
//! so waits for that routing and runs again under it, transparently: a push keeps its sequence
//! number, so every server of the new chain drops what it already applied (0 lost, 0 doubled);
//! a pull is asked of the new head.

use std::time::{Duration, Instant};

use ferrops_net::Status;

use super::pending::{Completed, Resend};
use super::{retry_key_misses, State, Ticket, Worker};
use crate::routing::RoutingTable;
use crate::EngineError;

/// At most this many resends within one call.
const MAX_RESENDS: usize = 1000;

/// How long a request refused by a server that has not yet heard of the routing the worker
/// holds waits before it is sent again.
const CATCH_UP: Duration = Duration::from_millis(10);

/// How long a request refused `Unavailable` waits for a newer routing before it is sent again
/// under the same one.
const SETTLING: Duration = Duration::from_millis(100);

/// When one call's failures began under the routing it used: a call that keeps failing under
/// one routing gives up a fixed time after its first failure there, however often it resent.
#[derive(Default)]
struct Failing {
    since: Option<(u32, Instant)>,
}

impl Failing {
    /// When the call first failed under routing version `used`.
    fn since(&mut self, used: u32) -> Instant {
        match self.since {
            Some((version, at)) if version == used => at,
            _ => self.since.insert((used, Instant::now())).1,
        }
    }
}

impl Worker {
    /// Runs `attempt` (a whole blocking request) until it succeeds or fails for another reason
    /// than a failover; after a failover, once the new routing has arrived.
    pub(super) fn surviving_failover<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut resends = 0;
        let mut failing = Failing::default();
        loop {
            let used = self.lock().routing.version;
            match attempt() {
                Err(e) if is_failover(&e) && resends < MAX_RESENDS => {
                    resends += 1;
                    self.await_routing_after(used, e, failing.since(used))?;
                }
                other => return other,
            }
        }
    }

    /// An asynchronous request that failed with `error`: if a failover cut it short, sends it
    /// again under the new routing (a push under its sequence number) until it completes.
    pub(super) fn resend_after(
        &self,
        error: EngineError,
        (used, resend): (u32, Resend),
    ) -> Result<Completed, EngineError> {
        if !is_failover(&error) {
            return Err(error);
        }
        self.await_routing_after(used, error, Instant::now())?;
        // A server that misses a key list (its cache was emptied by the new routing, or capped)
        // gets the keys, a push under its own number.
        self.surviving_failover(|| {
            retry_key_misses(|only| {
                let Ticket(id) = match &resend {
                    Resend::Push {
                        table,
                        keys,
                        values,
                        seq,
                    } => self.push_again(*table, keys, values, *seq, only)?,
                    Resend::Pull { table, keys } => self.pull_async(*table, keys)?,
                };
                self.wait_once(id)
            })
        })
    }

    /// With replication, keeps what it takes to send asynchronous request `ticket` again;
    /// whether it did.
    pub(super) fn keep_for_resend(&self, ticket: &Ticket, resend: impl FnOnce() -> Resend) -> bool {
        let mut st = self.lock();
        if !st.io.inbound.replicated {
            return false;
        }
        let used = st.routing.version;
        let Some(p) = st.io.inbound.outstanding.tickets.get_mut(&ticket.0) else {
            return false;
        };
        p.resend = Some((used, resend()));
        true
    }

    /// Waits for a routing newer than `used`, until three heartbeat timeouts (the scheduler's
    /// detector needs one) after `since`, when the call first failed under `used`; `error` if
    /// none comes or replication is off. A server that refused a request routed with a version
    /// newer than its own has not yet heard of it: the request is sent again shortly. So is one
    /// refused `Unavailable` while no newer routing comes: the head's chain is still settling
    /// (the next server not dialed yet, or dead under a routing the head has not replaced yet).
    fn await_routing_after(
        &self,
        used: u32,
        error: EngineError,
        since: Instant,
    ) -> Result<(), EngineError> {
        let mut st = self.lock();
        if !st.io.inbound.replicated {
            return Err(error);
        }
        let server_behind = matches!(
            &error,
            EngineError::Remote { status: Status::NotOwner, message, .. }
                if message.starts_with(&format!("routed with version {used}, server has "))
        ) && st
            .io
            .inbound
            .latest_routing
            .as_ref()
            .is_some_and(|r| r.version == used);
        if server_behind {
            st.io.progress(Some(CATCH_UP), &mut None)?;
            return Ok(());
        }
        let deadline = since + st.io.inbound.scheduler_silence.timeout() * 3;
        let unsettled = matches!(
            &error,
            EngineError::Remote {
                status: Status::Unavailable,
                ..
            }
        );
        let until = if unsettled {
            deadline.min(Instant::now() + SETTLING)
        } else {
            deadline
        };
        let newer = |r: &Option<RoutingTable>| r.as_ref().is_some_and(|r| r.version > used);
        let mut arrived = st.io.drive_until(
            |inbound| newer(&inbound.latest_routing),
            &mut None,
            Some(until),
        )?;
        // Without a scheduler, or with one still recovering the job (it publishes a newer
        // routing when done), the wait goes on: the outage setting bounds it.
        let mut outage = false;
        while !arrived && (st.io.inbound.scheduler_down || st.io.inbound.recovering) {
            outage = true;
            arrived = st.io.drive_until(
                |inbound| newer(&inbound.latest_routing),
                &mut None,
                Some(Instant::now() + SETTLING),
            )?;
        }
        if !arrived {
            // After an outage the request is sent again under the same routing.
            let settling = outage || (unsettled && Instant::now() < deadline);
            return if settling { Ok(()) } else { Err(error) };
        }
        st.adopt_routing();
        tracing::warn!(
            "worker {}: {error}; resending under routing version {}",
            self.info.rank,
            st.routing.version
        );
        Ok(())
    }
}

impl State {
    /// Takes the newest routing the scheduler sent, if newer than the one in use.
    pub(super) fn adopt_routing(&mut self) {
        match &self.io.inbound.latest_routing {
            Some(r) if r.version > self.routing.version => {
                self.routing = r.clone();
                self.connect_new_servers();
            }
            _ => {}
        }
    }
}

/// Whether a request failed because the job is failing over (and should run again under the
/// newer routing).
fn is_failover(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::ServerLost(_)
            | EngineError::Remote {
                status: Status::NotOwner | Status::Unavailable,
                ..
            }
    )
}
