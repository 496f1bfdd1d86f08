//! The roles of a ferrops job — one name for the idea across the engine, the launcher and the
//! command line. A node says its role when it registers with the scheduler (`Control::Register`),
//! the launcher labels its children by it, and `FERROPS_ROLE` names it.

use serde::{Deserialize, Serialize};

/// Worker rank r is node `WORKER_NODE_BASE + r`; server rank r is node `1 + r`. The two ranges
/// cannot meet however many servers or workers join.
pub const WORKER_NODE_BASE: u32 = 1 << 31;

/// What a ferrops process does in a job.
///
/// The variant order is part of the wire format (postcard encodes the index in
/// `Control::Register`): new roles go at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Holds a range of the parameters and applies pushes to it.
    Server,
    /// Computes on its data, pushes updates and pulls parameters.
    Worker,
    /// Admits nodes, publishes the routing table, runs barriers. It never registers itself.
    Scheduler,
    /// `ferrops ctl`: an operator's connection to a running job's scheduler (status,
    /// checkpoints). It is no member of the job: it never registers and no server admits it.
    Ctl,
}

impl Role {
    /// Every role, in the order a job starts them.
    pub const ALL: [Role; 3] = [Role::Scheduler, Role::Server, Role::Worker];

    /// Every role a connection can authenticate as: the job's roles and the control tool.
    const WIRE: [Role; 4] = [Role::Scheduler, Role::Server, Role::Worker, Role::Ctl];

    /// The role's name as used by `FERROPS_ROLE`, the subcommands and log labels.
    pub fn name(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Server => "server",
            Role::Worker => "worker",
            Role::Ctl => "ctl",
        }
    }

    /// The role's index on the wire (in `Control::Register` and the handshake's identity).
    pub fn wire_index(self) -> u8 {
        match self {
            Role::Server => 0,
            Role::Worker => 1,
            Role::Scheduler => 2,
            Role::Ctl => 3,
        }
    }

    /// The role whose wire index is `index`, if any.
    pub fn from_wire_index(index: u8) -> Option<Role> {
        Role::WIRE.into_iter().find(|r| r.wire_index() == index)
    }

    /// The role named `name` (ASCII case ignored), if any.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ignore_case() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
            assert_eq!(Role::from_name(&role.name().to_uppercase()), Some(role));
        }
        assert_eq!(Role::from_name("client"), None);
        assert_eq!(
            Role::from_name("ctl"),
            None,
            "the control tool is no process of a job"
        );
    }

    #[test]
    fn wire_indices_of_the_registering_roles_are_unchanged() {
        // Server and Worker were encoded as 0 and 1 before the scheduler joined the enum.
        assert_eq!(postcard::to_stdvec(&Role::Server).unwrap(), [0]);
        assert_eq!(postcard::to_stdvec(&Role::Worker).unwrap(), [1]);
        assert_eq!(postcard::to_stdvec(&Role::Scheduler).unwrap(), [2]);
        assert_eq!(postcard::to_stdvec(&Role::Ctl).unwrap(), [3]);
        for role in Role::WIRE {
            assert_eq!(postcard::to_stdvec(&role).unwrap(), [role.wire_index()]);
            assert_eq!(Role::from_wire_index(role.wire_index()), Some(role));
        }
    }
}
