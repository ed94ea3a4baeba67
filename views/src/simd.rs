//! Runtime CPU dispatch for the pixel kernels.
//!
//! The kernels are plain, branch-free Rust over contiguous slices and small fixed-size arrays,
//! written so that LLVM vectorises them. The default x86-64 target only promises SSE2, so
//! [`multiversion!`] compiles each kernel three times (baseline, AVX2, AVX-512) and picks the best
//! copy the CPU supports at run time. No fast-math: float kernels round exactly as written (Rust
//! never contracts `a * b + c` into an FMA), so every copy gives the same bytes. On aarch64 the
//! baseline target already has NEON (Advanced SIMD is part of ARMv8-A), so there is one copy.
//!
//! The hottest kernels also have hand-written paths per level: on x86-64 AVX2 (AMD Rome/Milan,
//! Intel Haswell and later), AVX-512 F/BW without VBMI (Skylake-SP, Cascade Lake) and AVX-512 VBMI
//! (Ice Lake, Sapphire Rapids, Zen 4); on aarch64 NEON (NVIDIA Grace, AWS Graviton, Ampere). One
//! binary: the level is detected once at start-up.
//!
//! `BARLOW_SIMD=LEVEL` caps the level (to measure or test what each one buys): on x86-64
//! `scalar|avx2|avx512bw|avx512vbmi` (`avx512` is the old name of the top level), on aarch64
//! `scalar|neon`; a level the CPU lacks falls to the best one below it. `scalar` means "no
//! hand-written path": the auto-vectorised kernels keep the baseline target's vectors (SSE2,
//! NEON).

use std::sync::atomic::{AtomicU8, Ordering};

/// Baseline target (SSE2 on x86-64, NEON on aarch64), no hand-written paths.
pub const SCALAR: u8 = 1;
/// AVX2 (and SSE4.1).
#[cfg(target_arch = "x86_64")]
pub const AVX2: u8 = 2;
/// AVX-512 F/BW/VL/DQ, without VBMI.
#[cfg(target_arch = "x86_64")]
pub const AVX512BW: u8 = 3;
/// AVX-512 F/BW/VL/DQ and VBMI (byte permutes across the register).
#[cfg(target_arch = "x86_64")]
pub const AVX512VBMI: u8 = 4;
/// The hand-written NEON (Advanced SIMD) paths.
#[cfg(target_arch = "aarch64")]
pub const NEON: u8 = 2;

/// Every level of this architecture, lowest first, with the name `BARLOW_SIMD` takes and
/// [`level_name`] gives. The tests compare every level in this list (see [`at_level`]), so on
/// each architecture they cover its own paths.
#[cfg(target_arch = "x86_64")]
pub const LEVELS: [(&str, u8); 4] = [
    ("scalar", SCALAR),
    ("avx2", AVX2),
    ("avx512bw", AVX512BW),
    ("avx512vbmi", AVX512VBMI),
];
/// Every level of this architecture, lowest first, with the name `BARLOW_SIMD` takes and
/// [`level_name`] gives. The tests compare every level in this list (see [`at_level`]), so on
/// each architecture they cover its own paths.
#[cfg(target_arch = "aarch64")]
pub const LEVELS: [(&str, u8); 2] = [("scalar", SCALAR), ("neon", NEON)];
/// Every level of this architecture (only the portable code here).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const LEVELS: [(&str, u8); 1] = [("scalar", SCALAR)];

/// The highest level of this architecture.
const TOP: u8 = LEVELS[LEVELS.len() - 1].1;

static LEVEL: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// The level [`at_level`] imposes on this thread (0: none).
    static FORCED: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with this thread's kernels at `level`, so that one process (a test) can compare every
/// level; `None`, without running `f`, where the CPU lacks the level.
pub fn at_level<R>(level: u8, f: impl FnOnce() -> R) -> Option<R> {
    struct Reset(u8);
    impl Drop for Reset {
        fn drop(&mut self) {
            FORCED.with(|l| l.set(self.0));
        }
    }
    if level > cpu_level() {
        return None;
    }
    let _reset = Reset(FORCED.with(|l| l.replace(level)));
    Some(f())
}

/// Prints, once per level and process, that a test skips `level_name` because this CPU lacks it.
pub fn say_skipped(level_name: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|s| s == level_name) {
        said.push(level_name.to_string());
        eprintln!(
            "SKIPPED at SIMD level {level_name}: this CPU lacks it (best here: {})",
            name_of(cpu_level())
        );
    }
}

/// The instruction set level the kernels use (detected once; see the module doc).
#[inline]
pub fn level() -> u8 {
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

/// The name of [`level`] (`scalar`, `avx2`, `avx512bw` or `avx512vbmi`; `scalar` or `neon`).
pub fn level_name() -> &'static str {
    name_of(level())
}

/// The name of `level` as `BARLOW_SIMD` spells it.
pub fn name_of(level: u8) -> &'static str {
    LEVELS
        .iter()
        .find(|&&(_, l)| l == level)
        .map_or("unknown", |&(n, _)| n)
}

/// The best level this CPU supports.
pub fn cpu_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
            if has!("avx512vbmi") {
                AVX512VBMI
            } else {
                AVX512BW
            }
        } else if has!("avx2") {
            AVX2
        } else {
            SCALAR
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // Advanced SIMD is mandatory in ARMv8-A; asked anyway, as the x86 features are.
        if std::arch::is_aarch64_feature_detected!("neon") {
            NEON
        } else {
            SCALAR
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        SCALAR
    }
}

/// The level `BARLOW_SIMD` asks for (`None`: unset, so the best), or an error naming the accepted
/// values.
pub fn requested() -> Result<Option<u8>, String> {
    match std::env::var("BARLOW_SIMD") {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        #[cfg(target_arch = "x86_64")]
        Ok(v) if v == "avx512" => Ok(Some(AVX512VBMI)),
        Ok(v) => LEVELS
            .iter()
            .find(|&&(n, _)| n == v)
            .map(|&(_, l)| Some(l))
            .ok_or_else(|| format!("BARLOW_SIMD={v} is not a level: use {}", accepted())),
    }
}

/// The names `BARLOW_SIMD` accepts, as a sentence's list: `scalar, avx2, avx512bw or avx512vbmi`.
fn accepted() -> String {
    let names: Vec<&str> = LEVELS.iter().map(|&(n, _)| n).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn detect() -> u8 {
    // An unknown value was reported by `requested` at start-up (the loader checks it); here it
    // means no cap.
    let cap = requested().ok().flatten().unwrap_or(TOP);
    cpu_level().min(cap)
}

/// Whether the hand-written AVX-512 VBMI kernels may run: [`level`] is [`AVX512VBMI`] (so the
/// CPU has it and it is not capped below).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn vbmi() -> bool {
    level() >= AVX512VBMI
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
                    $crate::simd::AVX512BW | $crate::simd::AVX512VBMI => return unsafe { avx512($($arg),*) },
                    $crate::simd::AVX2 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            inner($($arg),*)
        }
    };
}

pub(crate) use multiversion;
