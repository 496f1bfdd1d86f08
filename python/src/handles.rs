//! The small objects a worker hands out: `Table` (a declared table and its shape) and `Ticket`
//! (an asynchronous push or pull to give back to `Worker.wait`).

use std::sync::Mutex;

use ferrops_engine::{Consistency, TableId};
use pyo3::prelude::*;

use crate::errors::unpoisoned;

/// A declared table: what `Worker.declare_table` returns and push/pull take.
#[pyclass(module = "ferrops", name = "Table", frozen)]
pub struct Table {
    pub id: TableId,
    pub name: String,
    pub dim: usize,
    /// Input arrays per push (2 for `scaled_prox_l1`, else 1).
    pub inputs: usize,
    pub rule: &'static str,
    pub consistency: Consistency,
}

impl Table {
    /// Floats per key a push carries.
    pub fn push_floats_per_key(&self) -> usize {
        self.dim * self.inputs
    }
}

#[pymethods]
impl Table {
    /// The table's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Values per key (the second axis of what `pull` returns).
    #[getter]
    fn dim(&self) -> usize {
        self.dim
    }

    /// Floats per key a push carries: `dim` times the rule's inputs (2 for `scaled_prox_l1`:
    /// gradients then curvatures, one block after the other).
    #[getter]
    fn push_width(&self) -> usize {
        self.push_floats_per_key()
    }

    /// The update rule's name.
    #[getter]
    fn rule(&self) -> &'static str {
        self.rule
    }

    /// `"sequential"`, `"eventual"`, or the bounded delay τ as an int.
    #[getter]
    fn consistency<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.consistency {
            Consistency::Sequential => "sequential".into_pyobject(py)?.into_any(),
            Consistency::Eventual => "eventual".into_pyobject(py)?.into_any(),
            Consistency::BoundedDelay(tau) => tau.into_pyobject(py)?.into_any(),
        })
    }

    /// The cluster-wide table id the scheduler assigned.
    #[getter]
    fn id(&self) -> u32 {
        self.id.0
    }

    fn __repr__(&self) -> String {
        let consistency = match self.consistency {
            Consistency::Sequential => "'sequential'".to_string(),
            Consistency::Eventual => "'eventual'".to_string(),
            Consistency::BoundedDelay(tau) => tau.to_string(),
        };
        format!(
            "Table(name={:?}, dim={}, rule='{}', consistency={consistency}, id={})",
            self.name, self.dim, self.rule, self.id.0
        )
    }
}

/// What a ticket's request was.
#[derive(Clone, Copy, Debug)]
pub enum TicketKind {
    Push,
    /// A pull of `rows` keys of `dim` values each.
    Pull {
        rows: usize,
        dim: usize,
    },
}

/// An asynchronous push or pull in flight; `Worker.wait(ticket)` finishes it (once).
#[pyclass(module = "ferrops", name = "Ticket", frozen)]
pub struct Ticket {
    /// The engine's ticket, taken by the one `wait` that finishes it.
    pub inner: Mutex<Option<ferrops_engine::Ticket>>,
    pub kind: TicketKind,
    /// The `Worker` object that issued it (tickets are numbered per worker).
    pub worker: u64,
    pub id: u64,
}

#[pymethods]
impl Ticket {
    /// `"push"` or `"pull"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.kind {
            TicketKind::Push => "push",
            TicketKind::Pull { .. } => "pull",
        }
    }

    /// Whether `wait` has already been called on this ticket.
    #[getter]
    fn waited(&self) -> bool {
        unpoisoned(self.inner.lock()).is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "Ticket(kind='{}', id={}, waited={})",
            self.kind(),
            self.id,
            self.waited()
        )
    }
}
