//! Runtime CPU dispatch for the pixel kernels.
//!
//! The kernels are plain, branch-free Rust over contiguous slices and small fixed-size arrays,
//! written so that LLVM vectorises them. The default x86-64 target only promises SSE2, so
//! [`multiversion!`] compiles each kernel three times (baseline, AVX2, AVX-512) and picks the best
//! copy the CPU supports at run time. No fast-math: float kernels round exactly as written (Rust
//! never contracts `a * b + c` into an FMA), so every copy gives the same bytes.
//!
//! `BARLOW_SIMD=scalar|avx2|avx512` caps the level (to measure what each one buys).

use std::sync::atomic::{AtomicU8, Ordering};

/// Baseline target (SSE2 on x86-64).
pub const SCALAR: u8 = 1;
/// AVX2 (and SSE4.1).
pub const AVX2: u8 = 2;
/// AVX-512 F/BW/VL/DQ.
pub const AVX512: u8 = 3;

static LEVEL: AtomicU8 = AtomicU8::new(0);

#[cfg(test)]
thread_local! {
    /// The level [`at_level`] imposes on this thread (0: none).
    static FORCED: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with this thread's kernels at `level` (test builds only, so that one test process can
/// compare every level); `None`, without running `f`, where the CPU lacks the level.
#[cfg(test)]
pub(crate) fn at_level<R>(level: u8, f: impl FnOnce() -> R) -> Option<R> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FORCED.with(|l| l.set(0));
        }
    }
    if level > cpu_level() {
        return None;
    }
    FORCED.with(|l| l.set(level));
    let _reset = Reset;
    Some(f())
}

/// The instruction set level the kernels use (detected once).
#[inline]
pub fn level() -> u8 {
    #[cfg(test)]
    if let l @ 1.. = FORCED.with(|l| l.get()) {
        return l;
    }
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let l = detect();
            LEVEL.store(l, Ordering::Relaxed);
            l
        }
        l => l,
    }
}

fn detect() -> u8 {
    let cap = match std::env::var("BARLOW_SIMD").as_deref() {
        Ok("scalar") => SCALAR,
        Ok("avx2") => AVX2,
        _ => AVX512,
    };
    cpu_level().min(cap)
}

/// The best level the CPU supports.
fn cpu_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
            AVX512
        } else if has!("avx2") {
            AVX2
        } else {
            SCALAR
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        SCALAR
    }
}

/// Whether the hand-written AVX-512 VBMI kernels may run: the CPU has VBMI (on top of the AVX-512
/// subsets of [`AVX512`]) and [`level`] is not capped below AVX-512.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn vbmi() -> bool {
    level() >= AVX512 && std::arch::is_x86_feature_detected!("avx512vbmi")
}

/// Defines `fn NAME(args) -> R { body }` compiled for the baseline target, AVX2 and AVX-512, and
/// dispatched at run time on [`level`].
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: `level` only reports what the CPU supports.
                    $crate::simd::AVX512 => return unsafe { avx512($($arg),*) },
                    $crate::simd::AVX2 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            inner($($arg),*)
        }
    };
}

pub(crate) use multiversion;
