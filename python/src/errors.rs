//! `shared::RingError` -> the Python exception that names it, with the same message (what
//! happened, then what to do).

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::PyErr;
use shared::RingError as Rust;

use crate::{ConsumerInUse, LoaderDied, RingError};

/// The Python exception for a ring error: `LoaderDied` for a dead loader (also after a restart
/// wait ran out), `ConsumerInUse` for a second reader, `KeyboardInterrupt` for a stop request,
/// `RingError` for everything else.
pub fn to_py(e: Rust) -> PyErr {
    let msg = e.to_string();
    match e {
        Rust::ProducerDied { .. } | Rust::NoNewProducer { .. } => LoaderDied::new_err(msg),
        Rust::ConsumerInUse { .. } => ConsumerInUse::new_err(msg),
        Rust::Interrupted => PyKeyboardInterrupt::new_err(msg),
        _ => RingError::new_err(msg),
    }
}
