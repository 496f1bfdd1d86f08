//! Checks of the numpy arrays handed to push and pull, before anything is sent: the dtype
//! (uint64 keys, float32 values), C order, alignment, writeability and size, each refused with
//! a message that names the argument, what it got and how to fix it. Arrays that pass are
//! borrowed in place (numpy's borrow flags), never copied.

use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyReadwriteArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::argument;

/// `obj` as a numpy array of `T` in C order, or an error naming `what` and the fix.
fn typed<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    dtype_name: &str,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let py = obj.py();
    let Ok(array) = obj.cast::<PyUntypedArray>() else {
        let type_name = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".to_string(), |n| n.to_string());
        return Err(argument(format!(
            "{what} must be a numpy.ndarray of {dtype_name}, got {type_name} \
             (use np.asarray({what}, dtype=np.{dtype_name}))"
        )));
    };
    let dtype = array.dtype();
    if !dtype.is_equiv_to(&numpy::dtype::<T>(py)) {
        return Err(argument(format!(
            "{what} must have dtype {dtype_name}, got {dtype} \
             (convert with {what}.astype(np.{dtype_name}))"
        )));
    }
    if !array.is_c_contiguous() {
        return Err(argument(format!(
            "{what} must be C-contiguous (row-major, no gaps), got shape {} with strides {} \
             (np.ascontiguousarray({what}) makes a C-ordered copy)",
            tuple(array.shape()),
            tuple(array.strides())
        )));
    }
    if !array.is_aligned() {
        return Err(argument(format!(
            "{what} is not aligned to its dtype in memory (np.require({what}, requirements=\"AC\") \
             makes an aligned copy)"
        )));
    }
    Ok(array.cast::<PyArrayDyn<T>>()?.clone())
}

/// Keys: a 1-D uint64 array in C order, borrowed for reading.
pub fn keys<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, u64>> {
    let array = typed::<u64>(obj, "keys", "uint64")?;
    if array.ndim() != 1 {
        return Err(argument(format!(
            "keys must be 1-D, got shape {} (flatten with keys.ravel())",
            tuple(array.shape())
        )));
    }
    array
        .try_readonly()
        .map_err(|e| argument(format!("keys cannot be read: {e}")))
}

/// Values to push: a float32 array in C order of any shape, borrowed for reading.
pub fn values<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    typed::<f32>(obj, what, "float32")?
        .try_readonly()
        .map_err(|e| argument(format!("{what} cannot be read: {e}")))
}

/// A destination for pulled values: a writeable float32 array in C order of any shape,
/// borrowed for writing.
pub fn out<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadwriteArrayDyn<'py, f32>> {
    typed::<f32>(obj, "out", "float32")?
        .try_readwrite()
        .map_err(|e| {
            argument(format!(
                "out cannot be written ({e}); pass a writeable array that no other call is using"
            ))
        })
}

/// Refuses a value array whose size is not `keys × per_key`.
pub fn check_size(what: &str, shape: &[usize], keys: usize, per_key: usize) -> PyResult<()> {
    let have: usize = shape.iter().product();
    if Some(have) == keys.checked_mul(per_key) {
        return Ok(());
    }
    Err(argument(format!(
        "{what} has {have} floats (shape {}) but {keys} keys × {per_key} floats per key need {}",
        tuple(shape),
        keys.saturating_mul(per_key)
    )))
}

/// A shape or strides as Python prints them: `(3, 2)`, `(3,)`, `()`.
fn tuple<T: std::fmt::Display>(items: &[T]) -> String {
    match items {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = items.iter().map(|i| i.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}
