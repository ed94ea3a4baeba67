//! Turning a panic inside a third-party decoder into an ordinary "bad file".
//!
//! Decoders are fed untrusted bytes; zune-jpeg has been seen to trip an internal assertion on a
//! truncated file. [`catch_decoder_panic`] runs the decode under `catch_unwind` and silences the
//! panic message for that call only (other panics still print as usual).

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static IN_DECODER: Cell<bool> = const { Cell::new(false) };
}

fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_DECODER.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes `Err(message)`.
pub fn catch_decoder_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    IN_DECODER.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    IN_DECODER.with(|c| c.set(false));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("the decoder crashed on this file ({msg})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_normal_results_pass_through() {
        assert_eq!(catch_decoder_panic(|| 7), Ok(7));
        let err = catch_decoder_panic(|| -> u8 { panic!("boom {}", 1) }).unwrap_err();
        assert!(err.contains("boom 1"), "{err}");
        assert!(!IN_DECODER.with(Cell::get));
    }
}
