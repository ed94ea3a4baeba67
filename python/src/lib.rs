//! `barlow._barlow`: the native half of the `barlow` Python package.
//!
//! It is a thin layer over the `shared` crate's [`shared::Consumer`]: attaching, validation,
//! ordering, liveness and the errors' wording all come from there, so Python reads the ring by
//! the very rules `trainer --shm` does. The pure-Python half (`barlow/__init__.py`) turns what
//! [`ring::Ring::take`] returns into numpy views and a `Batch`; `barlow/torch.py` builds
//! PyTorch's loader on top.

use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

mod errors;
mod ring;

create_exception!(
    barlow,
    RingError,
    PyRuntimeError,
    "Anything wrong with a ring: its name, file, header, ownership or peer. The message says what happened and what to do."
);
create_exception!(
    barlow,
    LoaderDied,
    RingError,
    "The loader (the ring's producer) died or stopped its heartbeat while this process read the ring."
);
create_exception!(
    barlow,
    ConsumerInUse,
    RingError,
    "Another live process already reads this ring; a ring has one reader."
);

#[pymodule]
fn _barlow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RingError", py.get_type::<RingError>())?;
    m.add("LoaderDied", py.get_type::<LoaderDied>())?;
    m.add("ConsumerInUse", py.get_type::<ConsumerInUse>())?;
    m.add_class::<ring::Ring>()?;
    m.add_class::<ring::Mapped>()?;
    m.add("FORMAT_VERSION", shared::FORMAT_VERSION)?;
    Ok(())
}
