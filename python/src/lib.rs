//! The `ferrops` Python module: a worker of a ferrops job that pushes and pulls numpy arrays in
//! place, with the GIL released while it waits on the network. Built by maturin into one abi3
//! wheel for CPython >= 3.9; see docs/python.md.

mod arrays;
mod errors;
mod handles;
mod spec;
mod worker;

use pyo3::prelude::*;

/// Python binding of the ferrops parameter server worker API.
#[pymodule]
#[pyo3(name = "ferrops")]
fn ferrops_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<worker::Worker>()?;
    m.add_class::<handles::Table>()?;
    m.add_class::<handles::Ticket>()?;
    errors::register(m)?;
    let rules: Vec<&str> = spec::RULES.iter().map(|(name, _, _)| *name).collect();
    m.add("RULES", rules)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
