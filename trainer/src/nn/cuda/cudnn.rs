//! A minimal cuDNN FFI, loaded at run time: the legacy convolution API that cuDNN 8 and 9 both
//! export (`libcudnn.so.9` from PyPI's `nvidia-cudnn-cu13`, or a system `libcudnn.so.8`).
//!
//! Why not cudarc's `cudnn` module: its bindings were generated from cuDNN 8 headers, cuDNN 9
//! changed the status codes (hierarchical values such as 2000, 3000), and a status outside
//! cudarc's `#[repr(u32)]` enum is undefined behaviour. Here every status is a plain `i32` and
//! every enum a `c_int` with the values both versions share; the library is opened with
//! `dlopen`, so the binary links against nothing of cuDNN and runs (on CPU) without it.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use libloading::Library;

pub type Handle = *mut c_void;
pub type TensorDesc = *mut c_void;
pub type FilterDesc = *mut c_void;
pub type ConvDesc = *mut c_void;
pub type Status = c_int;

pub const DATA_FLOAT: c_int = 0;
pub const TENSOR_NCHW: c_int = 0;
pub const CROSS_CORRELATION: c_int = 1;
/// Lets cuDNN use tensor cores with TF32 on Ampere and later.
pub const DEFAULT_MATH: c_int = 0;
/// Full-precision FMA only (no TF32).
pub const FMA_MATH: c_int = 3;

/// One result of a `cudnnFind*AlgorithmEx` call (the three perf structs share this layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AlgoPerf {
    pub algo: c_int,
    pub status: Status,
    pub time: f32,
    pub memory: usize,
    pub determinism: c_int,
    pub math_type: c_int,
    pub reserved: [c_int; 3],
}

macro_rules! cudnn_api {
    ($($name:ident: fn($($arg:ty),*) -> $ret:ty;)*) => {
        /// The cuDNN entry points barlow uses, resolved once from the shared library.
        #[allow(non_snake_case)]
        pub struct Api {
            _lib: Library,
            $(pub $name: unsafe extern "C" fn($($arg),*) -> $ret,)*
        }

        impl Api {
            #[allow(non_snake_case)]
            fn load(lib: Library) -> Result<Api, String> {
                // SAFETY: each symbol is looked up by its C name and given the signature of the
                // cuDNN 8/9 headers; the library outlives the pointers (it is kept in `_lib`).
                unsafe {
                    $(let $name = *lib
                        .get::<unsafe extern "C" fn($($arg),*) -> $ret>(concat!(stringify!($name), "\0").as_bytes())
                        .map_err(|e| format!("cuDNN lacks {}: {e}", stringify!($name)))?;)*
                    Ok(Api { _lib: lib, $($name,)* })
                }
            }
        }
    };
}

cudnn_api! {
    cudnnGetVersion: fn() -> usize;
    cudnnGetErrorString: fn(Status) -> *const c_char;
    cudnnCreate: fn(*mut Handle) -> Status;
    cudnnCreateTensorDescriptor: fn(*mut TensorDesc) -> Status;
    cudnnSetTensor4dDescriptorEx: fn(TensorDesc, c_int, c_int, c_int, c_int, c_int, c_int, c_int, c_int, c_int) -> Status;
    cudnnDestroyTensorDescriptor: fn(TensorDesc) -> Status;
    cudnnCreateFilterDescriptor: fn(*mut FilterDesc) -> Status;
    cudnnSetFilter4dDescriptor: fn(FilterDesc, c_int, c_int, c_int, c_int, c_int, c_int) -> Status;
    cudnnDestroyFilterDescriptor: fn(FilterDesc) -> Status;
    cudnnCreateConvolutionDescriptor: fn(*mut ConvDesc) -> Status;
    cudnnSetConvolution2dDescriptor: fn(ConvDesc, c_int, c_int, c_int, c_int, c_int, c_int, c_int, c_int) -> Status;
    cudnnSetConvolutionMathType: fn(ConvDesc, c_int) -> Status;
    cudnnDestroyConvolutionDescriptor: fn(ConvDesc) -> Status;
    cudnnFindConvolutionForwardAlgorithmEx: fn(Handle, TensorDesc, *const c_void, FilterDesc, *const c_void, ConvDesc, TensorDesc, *mut c_void, c_int, *mut c_int, *mut AlgoPerf, *mut c_void, usize) -> Status;
    cudnnFindConvolutionBackwardDataAlgorithmEx: fn(Handle, FilterDesc, *const c_void, TensorDesc, *const c_void, ConvDesc, TensorDesc, *mut c_void, c_int, *mut c_int, *mut AlgoPerf, *mut c_void, usize) -> Status;
    cudnnFindConvolutionBackwardFilterAlgorithmEx: fn(Handle, TensorDesc, *const c_void, TensorDesc, *const c_void, ConvDesc, FilterDesc, *mut c_void, c_int, *mut c_int, *mut AlgoPerf, *mut c_void, usize) -> Status;
    cudnnConvolutionForward: fn(Handle, *const c_void, TensorDesc, *const c_void, FilterDesc, *const c_void, ConvDesc, c_int, *mut c_void, usize, *const c_void, TensorDesc, *mut c_void) -> Status;
    cudnnConvolutionBackwardData: fn(Handle, *const c_void, FilterDesc, *const c_void, TensorDesc, *const c_void, ConvDesc, c_int, *mut c_void, usize, *const c_void, TensorDesc, *mut c_void) -> Status;
    cudnnConvolutionBackwardFilter: fn(Handle, *const c_void, TensorDesc, *const c_void, TensorDesc, *const c_void, ConvDesc, c_int, *mut c_void, usize, *const c_void, FilterDesc, *mut c_void) -> Status;
}

/// Library names tried in order (`BARLOW_CUDNN_LIB` first when set).
const LIBRARY_NAMES: [&str; 3] = ["libcudnn.so.9", "libcudnn.so.8", "libcudnn.so"];

/// The process's cuDNN, opened on first use; the error says what was tried and what to do.
pub fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        let mut names: Vec<String> = std::env::var("BARLOW_CUDNN_LIB").into_iter().collect();
        names.extend(LIBRARY_NAMES.iter().map(|s| s.to_string()));
        let mut errors = Vec::new();
        for name in &names {
            // SAFETY: loading cuDNN runs its initialisers, which have no preconditions.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Api::load(lib),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(format!(
            "cuDNN not found ({}). Install it (`pip install nvidia-cudnn-cu13` and put its \
             nvidia/cudnn/lib on LD_LIBRARY_PATH) or set BARLOW_CUDNN_LIB to the library's path",
            errors.join("; ")
        ))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A cuDNN call's status as a `Result`, with cuDNN's own description of a failure.
pub fn check(api: &Api, status: Status, what: &str) -> Result<(), String> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: cudnnGetErrorString returns a static NUL-terminated string for any status.
    let text = unsafe { CStr::from_ptr((api.cudnnGetErrorString)(status)) };
    Err(format!(
        "{what}: cuDNN status {status} ({})",
        text.to_string_lossy()
    ))
}

/// cuDNN's version as `major.minor.patch` (9.x encodes it as `major*10000 + minor*100 + patch`,
/// 8.x as `major*1000 + minor*100 + patch`).
pub fn version_string(api: &Api) -> String {
    // SAFETY: no arguments, no preconditions.
    let v = unsafe { (api.cudnnGetVersion)() };
    if v >= 90000 {
        format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100)
    } else {
        format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100)
    }
}
