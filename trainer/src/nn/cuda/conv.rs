//! cuDNN convolutions on channel-major maps: one plan per shape (descriptors and the fastest
//! algorithm of each direction, found once), one shared workspace, accumulating backward.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::Mutex;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceSlice};
use dfdx::prelude::*;
use dfdx::tensor::CudaError;

use super::cudnn::{self, AlgoPerf, Api};
use crate::nn::ConvShape;

/// The most workspace one convolution may use: `BARLOW_CUDNN_WORKSPACE_MIB` (default 1024).
fn workspace_cap() -> usize {
    std::env::var("BARLOW_CUDNN_WORKSPACE_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024)
        << 20
}

/// An algorithm and the workspace it needs.
#[derive(Debug, Clone, Copy)]
struct Algo {
    algo: c_int,
    workspace: usize,
}

/// Descriptors of one convolution shape and its chosen algorithms (found on first use).
struct Plan {
    x: cudnn::TensorDesc,
    y: cudnn::TensorDesc,
    w: cudnn::FilterDesc,
    conv: cudnn::ConvDesc,
    forward: Option<Algo>,
    backward_data: Option<Algo>,
    backward_filter: Option<Algo>,
}

/// The process's cuDNN state (one GPU per trainer process).
struct State {
    api: &'static Api,
    handle: cudnn::Handle,
    plans: HashMap<ConvShape, Plan>,
    workspace: Option<CudaSlice<u8>>,
}

// SAFETY: the handle and descriptors are only used under the state's mutex.
unsafe impl Send for State {}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn op_err(e: String) -> CudaError {
    CudaError::Op(e)
}

/// Drops every plan (their math type follows [`super::tf32`] when made).
pub fn forget_plans() {
    if let Some(st) = STATE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let plans: Vec<Plan> = st.plans.drain().map(|(_, p)| p).collect();
        for p in plans {
            destroy(st.api, p);
        }
    }
}

fn destroy(api: &Api, p: Plan) {
    // SAFETY: the descriptors were created by this module and are not used after this.
    unsafe {
        (api.cudnnDestroyTensorDescriptor)(p.x);
        (api.cudnnDestroyTensorDescriptor)(p.y);
        (api.cudnnDestroyFilterDescriptor)(p.w);
        (api.cudnnDestroyConvolutionDescriptor)(p.conv);
    }
}

/// Runs `f` with the state, creating the cuDNN handle on first use.
fn with_state<R>(
    dev: &Cuda,
    f: impl FnOnce(&mut State) -> Result<R, String>,
) -> Result<R, CudaError> {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let api = cudnn::api().map_err(op_err)?;
        dev.cuda_device().bind_to_thread()?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: creates a handle in the current context; it uses the legacy default stream,
        // the same as cudarc's device.
        cudnn::check(
            api,
            unsafe { (api.cudnnCreate)(&mut handle) },
            "cudnnCreate",
        )
        .map_err(op_err)?;
        *guard = Some(State {
            api,
            handle,
            plans: HashMap::new(),
            workspace: None,
        });
    }
    f(guard.as_mut().expect("state set above")).map_err(op_err)
}

/// `[B, C, H, W]` with channel-major strides `[H*W, B*H*W, W, 1]`.
fn cnhw_desc(
    api: &Api,
    b: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<cudnn::TensorDesc, String> {
    let mut d = std::ptr::null_mut();
    let i = |v: usize| v as c_int;
    // SAFETY: plain descriptor calls with valid out-pointers.
    unsafe {
        cudnn::check(
            api,
            (api.cudnnCreateTensorDescriptor)(&mut d),
            "cudnnCreateTensorDescriptor",
        )?;
        cudnn::check(
            api,
            (api.cudnnSetTensor4dDescriptorEx)(
                d,
                cudnn::DATA_FLOAT,
                i(b),
                i(c),
                i(h),
                i(w),
                i(h * w),
                i(b * h * w),
                i(w),
                1,
            ),
            "cudnnSetTensor4dDescriptorEx",
        )?;
    }
    Ok(d)
}

fn make_plan(api: &Api, s: &ConvShape) -> Result<Plan, String> {
    let g = &s.geom;
    let (ho, wo) = s.out_hw();
    let i = |v: usize| v as c_int;
    let x = cnhw_desc(api, s.b, g.cin, s.h, s.w)?;
    let y = cnhw_desc(api, s.b, g.cout, ho, wo)?;
    let mut w = std::ptr::null_mut();
    let mut conv = std::ptr::null_mut();
    let math = if super::tf32() {
        cudnn::DEFAULT_MATH
    } else {
        cudnn::FMA_MATH
    };
    // SAFETY: plain descriptor calls with valid out-pointers.
    unsafe {
        cudnn::check(
            api,
            (api.cudnnCreateFilterDescriptor)(&mut w),
            "cudnnCreateFilterDescriptor",
        )?;
        cudnn::check(
            api,
            (api.cudnnSetFilter4dDescriptor)(
                w,
                cudnn::DATA_FLOAT,
                cudnn::TENSOR_NCHW,
                i(g.cout),
                i(g.cin),
                i(g.k),
                i(g.k),
            ),
            "cudnnSetFilter4dDescriptor",
        )?;
        cudnn::check(
            api,
            (api.cudnnCreateConvolutionDescriptor)(&mut conv),
            "cudnnCreateConvolutionDescriptor",
        )?;
        cudnn::check(
            api,
            (api.cudnnSetConvolution2dDescriptor)(
                conv,
                i(g.p),
                i(g.p),
                i(g.s),
                i(g.s),
                1,
                1,
                cudnn::CROSS_CORRELATION,
                cudnn::DATA_FLOAT,
            ),
            "cudnnSetConvolution2dDescriptor",
        )?;
        cudnn::check(
            api,
            (api.cudnnSetConvolutionMathType)(conv, math),
            "cudnnSetConvolutionMathType",
        )?;
    }
    Ok(Plan {
        x,
        y,
        w,
        conv,
        forward: None,
        backward_data: None,
        backward_filter: None,
    })
}

impl State {
    fn plan(&mut self, s: &ConvShape) -> Result<&mut Plan, String> {
        if !self.plans.contains_key(s) {
            let p = make_plan(self.api, s)?;
            self.plans.insert(*s, p);
        }
        Ok(self.plans.get_mut(s).expect("inserted above"))
    }

    /// The shared workspace, grown to at least `bytes`: `(pointer, size)`.
    fn workspace(&mut self, dev: &Cuda, bytes: usize) -> Result<(u64, usize), String> {
        let have = self.workspace.as_ref().map_or(0, |w| w.len());
        if have < bytes.max(1) {
            // the old one is freed (on the stream) before the larger one is taken
            self.workspace = None;
            // SAFETY: workspace contents are never read before cuDNN writes them.
            let ws = unsafe { dev.cuda_device().alloc::<u8>(bytes.max(1)) }
                .map_err(|e| format!("allocating {} MiB of cuDNN workspace: {e:?}", bytes >> 20))?;
            self.workspace = Some(ws);
        }
        let ws = self.workspace.as_mut().expect("allocated above");
        Ok((*ws.device_ptr_mut(), ws.len()))
    }
}

/// The fastest successful result of a Find call within the workspace cap.
fn pick(results: &[AlgoPerf], cap: usize, what: &str) -> Result<Algo, String> {
    results
        .iter()
        .filter(|r| r.status == 0 && r.memory <= cap)
        .min_by(|a, b| a.time.total_cmp(&b.time))
        .map(|r| Algo {
            algo: r.algo,
            workspace: r.memory,
        })
        .ok_or_else(|| format!("{what}: cuDNN found no algorithm within {} MiB of workspace (BARLOW_CUDNN_WORKSPACE_MIB)", cap >> 20))
}

const REQUESTED: usize = 8;

fn p(v: u64) -> *mut c_void {
    v as *mut c_void
}

/// The three directions of a convolution, with their operands (device pointers).
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// `y = conv(x, w)` (beta = 0).
    Forward { x: u64, w: u64, y: u64 },
    /// `dx += conv_transpose(dy, w)` (beta = 1).
    BackwardData { w: u64, dy: u64, dx: u64 },
    /// `dw += corr(x, dy)` (beta = 1).
    BackwardFilter { x: u64, dy: u64, dw: u64 },
}

impl Direction {
    fn algo(self, plan: &mut Plan) -> &mut Option<Algo> {
        match self {
            Direction::Forward { .. } => &mut plan.forward,
            Direction::BackwardData { .. } => &mut plan.backward_data,
            Direction::BackwardFilter { .. } => &mut plan.backward_filter,
        }
    }
    /// Elements of the output, for Find's scratch buffer (backward must not write into the
    /// gradient it accumulates into).
    fn scratch_len(self, s: &ConvShape) -> Option<usize> {
        match self {
            Direction::Forward { .. } => None,
            Direction::BackwardData { .. } => Some(s.in_len()),
            Direction::BackwardFilter { .. } => Some(s.geom.weight_len()),
        }
    }
}

/// Runs one direction of the convolution of shape `s`; finds its algorithm on first use.
pub fn run(dev: &Cuda, s: &ConvShape, dir: Direction) -> Result<(), CudaError> {
    with_state(dev, |st| {
        let (api, handle) = (st.api, st.handle);
        if dir.algo(st.plan(s)?).is_none() {
            let cap = workspace_cap();
            let scratch = match dir.scratch_len(s) {
                Some(len) => Some(
                    Storage::<f32>::try_alloc_len(dev, len)
                        .map_err(|e| format!("scratch for cuDNN's algorithm search: {e:?}"))?,
                ),
                None => None,
            };
            let out = |own: u64| scratch.as_ref().map_or(own, |b| *b.device_ptr());
            let (ws, ws_len) = st.workspace(dev, cap)?;
            let plan = st.plan(s)?;
            let mut n: c_int = 0;
            let mut r = [AlgoPerf::default(); REQUESTED];
            let (req, got, res) = (REQUESTED as c_int, &mut n as *mut c_int, r.as_mut_ptr());
            // SAFETY: every pointer is a live device buffer of the shape its descriptor gives
            // (outputs: the op's fresh output or a scratch buffer); the workspace holds ws_len.
            let status = unsafe {
                match dir {
                    Direction::Forward { x, w, y } => (api.cudnnFindConvolutionForwardAlgorithmEx)(
                        handle,
                        plan.x,
                        p(x),
                        plan.w,
                        p(w),
                        plan.conv,
                        plan.y,
                        p(out(y)),
                        req,
                        got,
                        res,
                        p(ws),
                        ws_len,
                    ),
                    Direction::BackwardData { w, dy, dx } => (api
                        .cudnnFindConvolutionBackwardDataAlgorithmEx)(
                        handle,
                        plan.w,
                        p(w),
                        plan.y,
                        p(dy),
                        plan.conv,
                        plan.x,
                        p(out(dx)),
                        req,
                        got,
                        res,
                        p(ws),
                        ws_len,
                    ),
                    Direction::BackwardFilter { x, dy, dw } => (api
                        .cudnnFindConvolutionBackwardFilterAlgorithmEx)(
                        handle,
                        plan.x,
                        p(x),
                        plan.y,
                        p(dy),
                        plan.conv,
                        plan.w,
                        p(out(dw)),
                        req,
                        got,
                        res,
                        p(ws),
                        ws_len,
                    ),
                }
            };
            cudnn::check(api, status, &format!("cudnnFind {dir:?}"))?;
            *dir.algo(plan) = Some(pick(
                &r[..n.clamp(0, req) as usize],
                cap,
                &format!("{dir:?}"),
            )?);
        }
        let algo = dir.algo(st.plan(s)?).expect("found above");
        let (ws, ws_len) = st.workspace(dev, algo.workspace)?;
        let plan = st.plan(s)?;
        let (one, zero) = (1f32, 0f32);
        let (alpha, beta_add) = (
            (&one as *const f32).cast::<c_void>(),
            (&one as *const f32).cast::<c_void>(),
        );
        let beta_set = (&zero as *const f32).cast::<c_void>();
        // SAFETY: as for Find; alpha and beta point to host floats that outlive the call.
        let status = unsafe {
            match dir {
                Direction::Forward { x, w, y } => (api.cudnnConvolutionForward)(
                    handle,
                    alpha,
                    plan.x,
                    p(x),
                    plan.w,
                    p(w),
                    plan.conv,
                    algo.algo,
                    p(ws),
                    ws_len,
                    beta_set,
                    plan.y,
                    p(y),
                ),
                Direction::BackwardData { w, dy, dx } => (api.cudnnConvolutionBackwardData)(
                    handle,
                    alpha,
                    plan.w,
                    p(w),
                    plan.y,
                    p(dy),
                    plan.conv,
                    algo.algo,
                    p(ws),
                    ws_len,
                    beta_add,
                    plan.x,
                    p(dx),
                ),
                Direction::BackwardFilter { x, dy, dw } => (api.cudnnConvolutionBackwardFilter)(
                    handle,
                    alpha,
                    plan.x,
                    p(x),
                    plan.y,
                    p(dy),
                    plan.conv,
                    algo.algo,
                    p(ws),
                    ws_len,
                    beta_add,
                    plan.w,
                    p(dw),
                ),
            }
        };
        cudnn::check(api, status, &format!("cuDNN {dir:?}"))
    })
}
