//! `ferrops.Worker`: the engine's worker behind a Python class. Every call checks its arrays
//! (`arrays`), borrows them in place, releases the GIL for the whole network wait, and turns
//! engine errors (and, defensively, panics) into `ferrops.Error` subclasses.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use ferrops_engine::config::{ClusterConfig, WorkerConfig};
use ferrops_engine::{Completed, EngineError, WorkerInfo};
use ferrops_net::auth::{ClusterKey, Secret};
use numpy::ndarray::Array2;
use numpy::{PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyDictMethods};

use crate::arrays;
use crate::errors::{argument, engine_error, unpoisoned, ClosedError, ConfigError, Error};
use crate::handles::{Table, Ticket, TicketKind};
use crate::spec::Declaration;

/// Numbers `Worker` objects, so a ticket is only ever waited on by the worker that issued it.
static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

/// Why a call made without the GIL failed; turned into a Python exception once it is back.
enum Failure {
    Engine(EngineError),
    Closed,
    Panic(String),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f {
            Failure::Engine(e) => engine_error(e),
            Failure::Closed => ClosedError::new_err(
                "this worker has finished (finish() or the end of its `with` block)",
            ),
            Failure::Panic(what) => Error::new_err(format!(
                "internal error in ferrops (please report it): {what}"
            )),
        }
    }
}

/// Runs `f` with the GIL released, catching a panic so that it never unwinds into Python.
fn without_gil<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Failure> + Send,
) -> PyResult<T> {
    let result = py.detach(|| {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(Failure::Panic(what))
        })
    });
    result.map_err(PyErr::from)
}

/// A worker of a ferrops job: declares tables, pushes and pulls numpy arrays in place,
/// advances its clock and meets the other workers at barriers.
#[pyclass(module = "ferrops", name = "Worker", frozen)]
pub struct Worker {
    /// `None` once finished. Calls take the read lock (the engine serialises them itself);
    /// `finish` takes the write lock to take the worker out.
    inner: RwLock<Option<ferrops_engine::Worker>>,
    info: WorkerInfo,
    id: u64,
}

impl Worker {
    fn connect(py: Python<'_>, cfg: WorkerConfig) -> PyResult<Worker> {
        let worker = without_gil(py, || Ok(ferrops_engine::Worker::connect(&cfg)?))?;
        Ok(Worker {
            info: worker.info(),
            inner: RwLock::new(Some(worker)),
            id: NEXT_WORKER.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Runs `f` on the engine's worker (the caller has released the GIL).
    fn with<T>(
        &self,
        f: impl FnOnce(&ferrops_engine::Worker) -> Result<T, EngineError>,
    ) -> Result<T, Failure> {
        let guard = unpoisoned(self.inner.read());
        let worker = guard.as_ref().ok_or(Failure::Closed)?;
        Ok(f(worker)?)
    }

    /// Waits for every outstanding request and leaves the job; later calls do nothing.
    fn finish_inner(&self) -> Result<(), Failure> {
        let taken = unpoisoned(self.inner.write()).take();
        match taken {
            Some(worker) => Ok(worker.finish()?),
            None => Ok(()),
        }
    }

    /// Checks a push's arrays against `table` and runs `send` on their slices without the GIL.
    fn with_push_arrays<T: Send>(
        &self,
        py: Python<'_>,
        table: &Table,
        keys: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        send: impl FnOnce(&ferrops_engine::Worker, &[u64], &[f32]) -> Result<T, EngineError> + Send,
    ) -> PyResult<T> {
        let keys = arrays::keys(keys)?;
        let values = arrays::values(values, "values")?;
        arrays::check_size(
            "values",
            values.shape(),
            keys.len(),
            table.push_floats_per_key(),
        )?;
        let (k, v) = (keys.as_slice()?, values.as_slice()?);
        without_gil(py, || self.with(|w| send(w, k, v)))
    }

    /// Checks a pull's keys and caller-owned `out` against `table` and runs `receive` on their
    /// slices without the GIL.
    fn with_pull_arrays(
        &self,
        py: Python<'_>,
        table: &Table,
        keys: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        receive: impl FnOnce(&ferrops_engine::Worker, &[u64], &mut [f32]) -> Result<(), EngineError>
            + Send,
    ) -> PyResult<()> {
        let keys = arrays::keys(keys)?;
        let mut out = arrays::out(out)?;
        arrays::check_size("out", out.shape(), keys.len(), table.dim)?;
        let (k, o) = (keys.as_slice()?, out.as_slice_mut()?);
        without_gil(py, || self.with(|w| receive(w, k, o)))
    }

    fn ticket(&self, ticket: ferrops_engine::Ticket, kind: TicketKind) -> Ticket {
        Ticket {
            id: ticket.id(),
            inner: Mutex::new(Some(ticket)),
            kind,
            worker: self.id,
        }
    }
}

#[pymethods]
impl Worker {
    /// Joins the job described by the environment, as set by `ferrops local` or a batch
    /// launcher: FERROPS_SCHEDULER, FERROPS_NUM_SERVERS, FERROPS_NUM_WORKERS, FERROPS_SECRET,
    /// ... and the TOML file named by FERROPS_CONFIG (the same reading as the `ferrops`
    /// binary). Blocks, without the GIL, until the whole job is up.
    #[staticmethod]
    fn from_env(py: Python<'_>) -> PyResult<Worker> {
        let cfg = ferrops::worker_config_from_env()
            .map_err(|e| ConfigError::new_err(format!("{e:#}")))?;
        Worker::connect(py, cfg)
    }

    /// Joins the job whose scheduler listens at `scheduler` ("host:port"), with the job's size
    /// and its cluster secret (`secret`, else `FERROPS_SECRET`; or `insecure=True` for a job
    /// that runs without one); every other setting takes its default.
    #[staticmethod]
    #[pyo3(signature = (scheduler, num_servers, num_workers, *, secret = None, insecure = false))]
    fn connect_to(
        py: Python<'_>,
        scheduler: &str,
        num_servers: usize,
        num_workers: usize,
        secret: Option<String>,
        insecure: bool,
    ) -> PyResult<Worker> {
        let addr: SocketAddr = scheduler
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                ConfigError::new_err(format!(
                    "scheduler address `{scheduler}` is not host:port or does not resolve"
                ))
            })?;
        let secret = secret.or_else(|| std::env::var("FERROPS_SECRET").ok());
        let key = match (secret, insecure) {
            (Some(_), true) => {
                return Err(ConfigError::new_err(
                    "insecure=True and a cluster secret are both given: keep one",
                ))
            }
            (Some(text), false) => ClusterKey::Secret(
                Secret::new(&text)
                    .map_err(|e| ConfigError::new_err(format!("invalid cluster secret: {e}")))?,
            ),
            (None, true) => ClusterKey::Insecure,
            (None, false) => {
                return Err(ConfigError::new_err(
                    "no cluster secret: pass secret=... or set FERROPS_SECRET (or insecure=True \
                     for a job that runs without one)",
                ))
            }
        };
        let mut cluster = ClusterConfig::new(addr, num_servers, num_workers);
        cluster.key = key;
        Worker::connect(py, WorkerConfig { cluster })
    }

    /// This worker's 0-based rank among the workers.
    #[getter]
    fn rank(&self) -> u32 {
        self.info.rank
    }

    /// Number of workers in the job.
    #[getter]
    fn num_workers(&self) -> u32 {
        self.info.num_workers
    }

    /// Number of servers in the job.
    #[getter]
    fn num_servers(&self) -> u32 {
        self.info.num_servers
    }

    /// Whether `finish` has been called.
    #[getter]
    fn finished(&self) -> bool {
        unpoisoned(self.inner.read()).is_none()
    }

    /// Where this worker serves its Prometheus metrics ("ip:port", the port picked when
    /// FERROPS_METRICS_ADDR asked for 0), or None without FERROPS_METRICS_ADDR.
    #[getter]
    fn metrics_addr(&self, py: Python<'_>) -> PyResult<Option<String>> {
        without_gil(py, || {
            self.with(|w| Ok(w.metrics_addr().map(|a| a.to_string())))
        })
    }

    /// The clock this worker is in (how many times it called `clock`).
    #[getter]
    fn current_clock(&self, py: Python<'_>) -> PyResult<u32> {
        without_gil(py, || self.with(|w| Ok(w.current_clock())))
    }

    /// Declares a table, or looks up the one another worker declared with the same
    /// arguments, and waits until every server holds it.
    #[pyo3(signature = (name, dim, rule = "sum", consistency = None, *, dense_keys = None,
                        codec = "raw", key_caching = true, **rule_kwargs))]
    #[allow(clippy::too_many_arguments)]
    fn declare_table(
        &self,
        py: Python<'_>,
        name: String,
        dim: i64,
        rule: &str,
        consistency: Option<&Bound<'_, PyAny>>,
        dense_keys: Option<u64>,
        codec: &str,
        key_caching: bool,
        rule_kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Table> {
        let mut kwargs = HashMap::new();
        for (key, value) in rule_kwargs.into_iter().flat_map(|d| d.iter()) {
            let key: String = key.extract()?;
            let value: f32 = value.extract().map_err(|_| {
                argument(format!(
                    "hyper-parameter {key} of rule `{rule}` must be a number, got {value}"
                ))
            })?;
            kwargs.insert(key, value);
        }
        let eventual = "eventual".into_pyobject(py)?.into_any();
        let declaration = Declaration {
            name,
            dim,
            rule,
            rule_kwargs: kwargs,
            consistency: consistency.unwrap_or(&eventual),
            dense_keys,
            codec,
            key_caching,
        };
        let spec = declaration.spec()?;
        let (dim, inputs) = (spec.dim as usize, spec.rule.inputs());
        let (rule, consistency, name) = (spec.rule.name(), spec.consistency, spec.name.clone());
        let id = without_gil(py, || self.with(|w| w.declare_table(spec)))?;
        Ok(Table {
            id,
            name,
            dim,
            inputs,
            rule,
            consistency,
        })
    }

    /// Pushes `values` for `keys` and waits until every server involved applied them.
    /// The values are sent straight from the array (no copy is made here).
    fn push(
        &self,
        py: Python<'_>,
        table: &Table,
        keys: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.with_push_arrays(py, table, keys, values, |w, k, v| w.push(table.id, k, v))
    }

    /// Sends a push and returns a `Ticket` at once. The arrays may be reused as soon as this
    /// returns: what the sockets did not take at once was copied into the send queue.
    fn push_async(
        &self,
        py: Python<'_>,
        table: &Table,
        keys: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<Ticket> {
        let ticket = self.with_push_arrays(py, table, keys, values, |w, k, v| {
            w.push_async(table.id, k, v)
        })?;
        Ok(self.ticket(ticket, TicketKind::Push))
    }

    /// Pulls the values of `keys` into a new float32 array of shape `(keys.size, dim)`,
    /// read from the sockets straight into it.
    fn pull<'py>(
        &self,
        py: Python<'py>,
        table: &Table,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let keys = arrays::keys(keys)?;
        let out = PyArray2::<f32>::zeros(py, [keys.len(), table.dim], false);
        {
            let mut dest = out.try_readwrite().map_err(|e| argument(e.to_string()))?;
            let (k, o) = (keys.as_slice()?, dest.as_slice_mut()?);
            without_gil(py, || self.with(|w| w.pull_into(table.id, k, o)))?;
        }
        Ok(out)
    }

    /// Pulls the values of `keys` into `out`, a writeable C-contiguous float32 array of
    /// `keys.size * dim` elements (any shape), in place: no copy is made.
    fn pull_into(
        &self,
        py: Python<'_>,
        table: &Table,
        keys: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.with_pull_arrays(py, table, keys, out, |w, k, o| w.pull_into(table.id, k, o))
    }

    /// Pulls into `out` only the rows that changed on the servers by more than
    /// `theta * max(|value|, eps)` since this worker's last `pull_changed_into` of them; the
    /// other rows keep what `out` holds, so pass the same array every time.
    fn pull_changed_into(
        &self,
        py: Python<'_>,
        table: &Table,
        keys: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        theta: f32,
    ) -> PyResult<()> {
        self.with_pull_arrays(py, table, keys, out, |w, k, o| {
            w.pull_changed_into(table.id, k, o, theta)
        })
    }

    /// Sends a pull and returns a `Ticket` at once; `wait(ticket)` returns the values as a
    /// float32 array of shape `(keys.size, dim)`. They are received into a buffer the request
    /// owns, which `wait` hands over as the array without copying it.
    fn pull_async(
        &self,
        py: Python<'_>,
        table: &Table,
        keys: &Bound<'_, PyAny>,
    ) -> PyResult<Ticket> {
        let keys = arrays::keys(keys)?;
        let k = keys.as_slice()?;
        let ticket = without_gil(py, || self.with(|w| w.pull_async(table.id, k)))?;
        let kind = TicketKind::Pull {
            rows: k.len(),
            dim: table.dim,
        };
        Ok(self.ticket(ticket, kind))
    }

    /// Waits for an asynchronous request: returns None for a push, the pulled array for a
    /// pull. A ticket can be waited on once.
    fn wait<'py>(&self, py: Python<'py>, ticket: &Ticket) -> PyResult<Bound<'py, PyAny>> {
        if ticket.worker != self.id {
            return Err(argument("this ticket was issued by another Worker"));
        }
        let engine_ticket = unpoisoned(ticket.inner.lock())
            .take()
            .ok_or_else(|| argument(format!("ticket {} was already waited on", ticket.id)))?;
        let done = without_gil(py, || self.with(|w| w.wait(engine_ticket)))?;
        match (done, ticket.kind) {
            (Completed::Pulled(values), TicketKind::Pull { rows, dim }) => {
                let array = Array2::from_shape_vec((rows, dim), values).map_err(|e| {
                    Error::new_err(format!("pulled values do not fit ({rows}, {dim}): {e}"))
                })?;
                Ok(PyArray2::from_owned_array(py, array).into_any())
            }
            _ => Ok(py.None().into_bound(py)),
        }
    }

    /// Makes progress without blocking and says whether `ticket` has finished.
    fn is_done(&self, py: Python<'_>, ticket: &Ticket) -> PyResult<bool> {
        if ticket.worker != self.id {
            return Err(argument("this ticket was issued by another Worker"));
        }
        let guard = unpoisoned(ticket.inner.lock());
        let Some(engine_ticket) = guard.as_ref() else {
            return Ok(true);
        };
        without_gil(py, || self.with(|w| w.is_done(engine_ticket)))
    }

    /// Finishes the current clock (tells every server this worker's pushes so far are
    /// complete, which may release other workers' pulls) and returns the new clock.
    fn clock(&self, py: Python<'_>) -> PyResult<u32> {
        without_gil(py, || self.with(|w| w.clock()))
    }

    /// Waits, without the GIL, until every live worker reaches a barrier.
    fn barrier(&self, py: Python<'_>) -> PyResult<()> {
        without_gil(py, || self.with(|w| w.barrier()))
    }

    /// Writes every table's values and rule state into the directory `dir` at a consistent
    /// clock, without the GIL. Collective: every live worker calls it after the same pushes;
    /// it returns once the checkpoint (one file per table and key range, and its manifest) is
    /// complete. `ferrops local --restore DIR` starts a job from it.
    fn checkpoint(&self, py: Python<'_>, dir: std::path::PathBuf) -> PyResult<()> {
        without_gil(py, || self.with(|w| w.checkpoint(&dir)))
    }

    /// Waits for every outstanding request, then tells the scheduler this worker is done.
    /// Calling it again does nothing; every other call raises `ClosedError` afterwards.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        without_gil(py, || self.finish_inner())
    }

    /// This worker's byte counters: bytes sent and received by kind, frames, and
    /// `value_bytes_copied`, the value bytes the transport had to copy (0 where values went
    /// straight between the sockets and your arrays).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = without_gil(py, || self.with(|w| Ok(w.metrics())))?;
        let dict = PyDict::new(py);
        for (name, value) in [
            ("frames_sent", m.frames_sent),
            ("frames_received", m.frames_received),
            ("header_bytes_sent", m.header_bytes_sent),
            ("key_bytes_sent", m.key_bytes_sent),
            ("value_bytes_sent", m.value_bytes_sent),
            ("extra_bytes_sent", m.extra_bytes_sent),
            ("header_bytes_received", m.header_bytes_received),
            ("key_bytes_received", m.key_bytes_received),
            ("value_bytes_received", m.value_bytes_received),
            ("extra_bytes_received", m.extra_bytes_received),
            ("value_bytes_copied", m.value_bytes_copied),
            ("rejected_frames", m.rejected_frames),
        ] {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Finishes the worker. When the block raised, its exception propagates and an error of
    /// `finish` itself is dropped in its favour.
    #[pyo3(signature = (exc_type = None, _exc = None, _traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let finished = without_gil(py, || self.finish_inner());
        match exc_type {
            Some(t) if !t.is_none() => Ok(false),
            _ => finished.map(|()| false),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Worker(rank={}, num_workers={}, num_servers={}{})",
            self.info.rank,
            self.info.num_workers,
            self.info.num_servers,
            if self.finished() { ", finished" } else { "" }
        )
    }
}
