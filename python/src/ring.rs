//! [`Ring`]: a `shared::Consumer` owned by a Python object.
//!
//! A batch taken with [`Ring::take`] is kept ([`shared::Batch::keep`]): its slot stays this
//! reader's until [`Ring::release`] or the next `take`, and Python reads its pixels in place
//! through the addresses `take` returns, kept mapped by a [`Mapped`] guard. Waiting happens
//! without the GIL and wakes every 100 ms to let Python handle Ctrl-C and timeouts, or at once
//! when another thread calls `close`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shared::{
    ring_path, stat, Consumer, Flow, MappingGuard, Observer, RingError as Rust, RingInfo,
    RingState, Snapshot,
};

use crate::errors::to_py;
use crate::RingError;

/// How often a waiting `take` wakes up to let Python handle signals and timeouts.
const TICK: Duration = Duration::from_millis(100);

/// The consumer of one ring (`barlow.Ring` wraps it; see its docstring).
#[pyclass(module = "barlow._barlow", name = "Ring")]
pub struct Ring {
    path: PathBuf,
    info: RingInfo,
    state: Mutex<State>,
    /// Apart from `state`, so that `stats()` never waits for a `take` that waits for a batch.
    flow: Mutex<FlowState>,
    /// Raised every [`TICK`] by the ticker thread: makes a waiting `next_until` return.
    tick: Arc<AtomicBool>,
    /// Set by `close`: a `take` waiting in another thread returns at once.
    closing: AtomicBool,
    /// Cleared on drop: ends the ticker thread.
    alive: Arc<AtomicBool>,
}

struct State {
    /// `None` once closed.
    consumer: Option<Consumer>,
    /// When the last batch was handed to Python: the time until the next `take` is the
    /// reader's own work (the ring's `train_ns` counter, as the trainer counts its steps).
    handed_out: Option<Instant>,
}

struct FlowState {
    observer: Observer,
    /// The snapshot the next `stats()` measures the flow from.
    since: (Snapshot, Instant),
}

/// One taken batch: `(position, epoch, step, count, labels, indices, [address of each view])`.
type Taken = (u64, u64, u64, usize, Vec<i64>, Vec<i64>, Vec<usize>);

/// Keeps the ring file mapped while numpy arrays point into it (their base object holds one).
#[pyclass(module = "barlow._barlow", frozen)]
pub struct Mapped {
    _guard: MappingGuard,
}

impl Ring {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the consumer half-updated in a way the
        // ring's own checks would not catch, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn closed() -> PyErr {
    RingError::new_err("this ring was closed; open it again with barlow.Ring(name)")
}

#[pymethods]
impl Ring {
    /// Attaches to the ring `name` (a name in /dev/shm or an absolute path) as its one reader,
    /// waiting up to `wait` seconds for it to appear, like `trainer --shm NAME --wait SECONDS`.
    #[new]
    #[pyo3(signature = (name, wait = 30.0, allow_foreign_ring = false))]
    fn new(py: Python<'_>, name: &str, wait: f64, allow_foreign_ring: bool) -> PyResult<Self> {
        let wait = Duration::try_from_secs_f64(wait).map_err(|_| {
            PyValueError::new_err(format!(
                "wait must be a number of seconds, 0 or more (got {wait})"
            ))
        })?;
        let path = ring_path(name).map_err(to_py)?;
        shared::ownership::allow_other_owner(allow_foreign_ring);
        // Attach in short tries so that Ctrl-C works during a long wait.
        let started = Instant::now();
        let consumer = loop {
            let left = wait.saturating_sub(started.elapsed());
            let attempt = py.detach(|| Consumer::attach(&path, left.min(TICK)));
            match attempt {
                Err(Rust::Timeout { .. }) if !left.is_zero() && left > TICK => {
                    py.check_signals()?
                }
                Err(Rust::Timeout { path, .. }) => {
                    return Err(to_py(Rust::Timeout {
                        path,
                        waited: started.elapsed(),
                    }))
                }
                Err(e) => return Err(to_py(e)),
                Ok(c) => break c,
            }
        };
        let observer = Observer::open(&path).map_err(to_py)?;
        let since = (observer.snapshot(), Instant::now());
        let (tick, alive) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(true)),
        );
        let (t, a) = (Arc::clone(&tick), Arc::clone(&alive));
        std::thread::Builder::new()
            .name("barlow-ring-tick".into())
            .spawn(move || {
                while a.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    t.store(true, Ordering::Relaxed);
                }
            })
            .map_err(|e| RingError::new_err(format!("could not start a thread: {e}")))?;
        Ok(Ring {
            path,
            info: consumer.info().clone(),
            state: Mutex::new(State {
                consumer: Some(consumer),
                handed_out: None,
            }),
            flow: Mutex::new(FlowState { observer, since }),
            tick,
            closing: AtomicBool::new(false),
            alive,
        })
    }

    /// The ring file's path.
    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// What the loader declared in the ring header.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let i = &self.info;
        let g = i.geometry;
        let d = PyDict::new(py);
        d.set_item("batch_size", g.batch_size)?;
        d.set_item("channels", g.channels)?;
        d.set_item("height", g.groups[0].height)?;
        d.set_item("width", g.groups[0].width)?;
        d.set_item("views", g.views())?;
        let groups = PyList::empty(py);
        for group in g.groups.iter() {
            let gd = PyDict::new(py);
            gd.set_item("views", group.views)?;
            gd.set_item("height", group.height)?;
            gd.set_item("width", group.width)?;
            groups.append(gd)?;
        }
        d.set_item("groups", groups)?;
        d.set_item("recipe", &i.recipe)?;
        d.set_item("slots", g.slots)?;
        d.set_item("mean", i.mean.to_vec())?;
        d.set_item("std", i.std.to_vec())?;
        d.set_item("dataset_len", i.dataset_len)?;
        d.set_item("steps_per_epoch", i.steps_per_epoch)?;
        d.set_item("seed", i.seed)?;
        d.set_item("planned_steps", i.total_steps)?;
        d.set_item("first_step", i.first_step)?;
        d.set_item("rank", i.rank)?;
        d.set_item("world_size", i.world_size)?;
        Ok(d)
    }

    /// The ring position the next batch comes from (batches taken and released so far).
    #[getter]
    fn position(&self) -> PyResult<u64> {
        let st = self.lock();
        st.consumer
            .as_ref()
            .map(Consumer::position)
            .ok_or_else(closed)
    }

    /// Takes the next batch (releasing the one taken before) and keeps its slot. Returns
    /// `(position, epoch, step, count, labels, indices, [address of each view])`, or
    /// `None` at the end of data. Raises `TimeoutError` after `timeout` seconds without a batch,
    /// `LoaderDied` when the loader dies, `KeyboardInterrupt` on Ctrl-C.
    #[pyo3(signature = (timeout = None))]
    fn take(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Taken>> {
        let deadline = match timeout {
            None => None,
            Some(t) => Some(
                Instant::now()
                    + Duration::try_from_secs_f64(t).map_err(|_| {
                        PyValueError::new_err(format!(
                            "timeout must be seconds, 0 or more (got {t})"
                        ))
                    })?,
            ),
        };
        let views = self.info.geometry.views();
        loop {
            self.tick.store(false, Ordering::Relaxed);
            let tick = &self.tick;
            let got = py.detach(|| {
                let mut st = self.lock();
                let st = &mut *st;
                if self.closing.load(Ordering::Relaxed) {
                    return Err(None);
                }
                let consumer = st.consumer.as_mut().ok_or(None)?;
                if let Some(t) = st.handed_out.take() {
                    consumer
                        .stats()
                        .add(stat::TRAIN_NS, t.elapsed().as_nanos() as u64);
                }
                let batch = match consumer.next_until(tick) {
                    Ok(Some(b)) => b,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(Some(e)),
                };
                let taken: Taken = (
                    batch.position(),
                    batch.epoch(),
                    batch.step(),
                    batch.count(),
                    batch.labels().iter().map(|&l| l as i64).collect(),
                    batch.indices().iter().map(|&i| i as i64).collect(),
                    (0..views).map(|v| batch.view(v).as_ptr() as usize).collect(),
                );
                batch.keep();
                st.handed_out = Some(Instant::now());
                Ok(Some(taken))
            });
            match got {
                Ok(t) => return Ok(t),
                Err(None) => return Err(closed()),
                Err(Some(Rust::Interrupted)) => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(PyTimeoutError::new_err(format!(
                            "no batch from the ring {} within {:.1}s",
                            self.path.display(),
                            timeout.unwrap_or(0.0)
                        )));
                    }
                }
                Err(Some(e)) => return Err(to_py(e)),
            }
        }
    }

    /// Gives the slot of the batch taken last back to the loader (nothing if already given).
    fn release(&self) {
        if let Some(c) = self.lock().consumer.as_mut() {
            c.release_kept();
        }
    }

    /// A guard that keeps the ring mapped while it lives (numpy arrays of a batch hold one).
    fn mapped(&self) -> PyResult<Mapped> {
        let st = self.lock();
        let c = st.consumer.as_ref().ok_or_else(closed)?;
        Ok(Mapped {
            _guard: c.mapping_guard(),
        })
    }

    /// Whether the ring is still attached.
    #[getter]
    fn attached(&self) -> bool {
        self.lock().consumer.is_some()
    }

    /// Releases the batch taken last and detaches: a new reader continues with the next batch.
    /// A `take` waiting in another thread returns at once, raising `RingError`.
    fn close(&self, py: Python<'_>) {
        self.closing.store(true, Ordering::Relaxed);
        self.tick.store(true, Ordering::Relaxed);
        // The lock is a waiting `take`'s until it wakes: wait for it without the GIL.
        let consumer = py.detach(|| self.lock().consumer.take());
        if let Some(mut c) = consumer {
            c.release_kept();
        }
    }

    /// The ring's live statistics and the flow since the previous call (or since attaching):
    /// rates, occupancy, each side's waiting share and the shared verdict
    /// (`input-bound` / `compute-bound` / `balanced` / `idle`, as `loader stat` says it).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut st = self.flow.lock().unwrap_or_else(|p| p.into_inner());
        let now = (st.observer.snapshot(), Instant::now());
        let (before, t0) = std::mem::replace(&mut st.since, now.clone());
        let (after, t1) = now;
        let interval = t1.duration_since(t0);
        let flow = Flow::between(&before, &after, interval, self.info.geometry.slots);
        let d = PyDict::new(py);
        d.set_item("interval_s", interval.as_secs_f64())?;
        d.set_item("produced_per_s", flow.produced_per_s)?;
        d.set_item("consumed_per_s", flow.consumed_per_s)?;
        d.set_item("occupancy", flow.occupancy)?;
        d.set_item("loader_wait", flow.producer_wait)?;
        d.set_item("reader_wait", flow.consumer_wait)?;
        d.set_item("verdict", flow.verdict.as_str())?;
        d.set_item("advice", flow.verdict.advice())?;
        d.set_item("written", after.written)?;
        d.set_item("consumed", after.consumed)?;
        let state = match after.state {
            RingState::Initialising => "initialising",
            RingState::Running => "running",
            RingState::EndOfData => "end-of-data",
            RingState::Aborted => "aborted",
        };
        d.set_item("state", state)?;
        d.set_item("loader_alive", after.producer_alive)?;
        let counters = PyDict::new(py);
        for (name, v) in stat::NAMES.iter().zip(after.stats) {
            if !name.is_empty() {
                counters.set_item(*name, v)?;
            }
        }
        d.set_item("counters", counters)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let g = self.info.geometry;
        format!(
            "Ring({:?}, batch_size={}, channels={}, views={:?})",
            self.path.display().to_string(),
            g.batch_size,
            g.channels,
            g.shape()
        )
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}
