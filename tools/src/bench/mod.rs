//! The benchmarks behind `ferrops bench`, and the floors they are reported against.
//!
//! * [`checkpoint`]: checkpoint write and restore speed against the disk's, in the same run.
//! * [`kernels`]: update-kernel throughput of every compiled-in instruction set.
//! * [`push_pull`]: push/pull latency and throughput through a local cluster.
//! * [`replication`]: push/pull with replication R beside R = 1, in alternating rounds.
//! * [`reducers`]: bytes on the wire of L1 logistic regression with each bandwidth reducer.
//! * [`sim`]: a deterministic simulation of training on W workers and S servers, fed with
//!   costs measured here, predicting time per iteration beyond this machine.
//! * [`floor`]: raw TCP over loopback, measured in the same run as a benchmark.
//! * [`perftest`]: the RDMA device's own floor, perftest's `ib_send_lat` / `ib_write_lat`.
//! * [`shm_floor`]: raw shared-memory ring ping-pongs and a memcpy of the values.
//!
//! A new benchmark is one module here, a subcommand in the command line's `bench` group and a
//! line in `main.rs` handing it its options.

pub mod checkpoint;
pub mod floor;
pub mod kernels;
pub mod perftest;
pub mod push_pull;
pub mod reducers;
pub mod replication;
pub mod shm_floor;
pub mod sim;
