//! The exceptions the module raises and how engine errors map onto them. Every failure reaches
//! Python as a `ferrops.Error` subclass carrying the engine's own message; nothing panics
//! across the FFI boundary.

use std::sync::{LockResult, PoisonError};

use ferrops_engine::key_list::KeyListError;
use ferrops_engine::EngineError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    ferrops,
    Error,
    PyException,
    "Base class of every error ferrops raises."
);
create_exception!(
    ferrops,
    ArgumentError,
    Error,
    "An argument is unusable: wrong dtype, memory order, shape or size of an array, an unknown \
     rule or consistency, a bad keyword argument. Nothing was sent."
);
create_exception!(
    ferrops,
    KeysError,
    ArgumentError,
    "The keys are not sorted and unique (or lie outside a dense table's range). Nothing was \
     sent."
);
create_exception!(
    ferrops,
    ConfigError,
    Error,
    "The worker configuration (FERROPS_* variables, FERROPS_CONFIG file) or a table \
     declaration is invalid."
);
create_exception!(
    ferrops,
    ClusterError,
    Error,
    "The job failed this request: a server or the scheduler was lost, refused, answered an \
     error, or the job was shut down."
);
create_exception!(
    ferrops,
    ClosedError,
    Error,
    "The worker has finished (`finish()` or the end of a `with` block); it can make no more \
     requests."
);

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("ArgumentError", py.get_type::<ArgumentError>())?;
    m.add("KeysError", py.get_type::<KeysError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ClusterError", py.get_type::<ClusterError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}

/// The Python exception for an engine error, with the engine's message.
pub fn engine_error(e: EngineError) -> PyErr {
    let message = e.to_string();
    match e {
        EngineError::Keys(KeyListError::LengthMismatch { .. }) => ArgumentError::new_err(message),
        EngineError::Keys(_) => KeysError::new_err(message),
        EngineError::Config(_) => ConfigError::new_err(message),
        EngineError::UnknownTable(_) | EngineError::UnknownTicket(_) => {
            ArgumentError::new_err(message)
        }
        _ => ClusterError::new_err(message),
    }
}

/// Shorthand for an [`ArgumentError`].
pub fn argument(message: impl Into<String>) -> PyErr {
    ArgumentError::new_err(message.into())
}

/// The guard of a lock, also when a thread panicked while holding it: a poisoned lock must not
/// become a panic across the FFI boundary.
pub fn unpoisoned<G>(lock: LockResult<G>) -> G {
    lock.unwrap_or_else(PoisonError::into_inner)
}
