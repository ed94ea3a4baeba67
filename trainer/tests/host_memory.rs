//! The heap high-water mark of `trainer::nn::host_memory`. Its counters are process-wide: in the
//! library's unit tests, other test threads free memory (lowering the use under the mark's base)
//! or take the mark themselves (every profiled CPU op does), so this test is a test binary of its
//! own, one test in one process.

use trainer::nn::host_memory::{in_use, take_high_water};

/// A buffer allocated and dropped between two readings shows in the high-water mark of that
/// interval.
#[test]
fn high_water_sees_a_freed_buffer() {
    const BIG: u64 = 64 << 20;
    let _ = take_high_water();
    let before = in_use();
    let big = vec![1u8; BIG as usize];
    std::hint::black_box(&big);
    drop(big);
    let mark = take_high_water();
    assert!(mark >= before + BIG, "high water {mark}, before {before}");
    // the next interval starts at the present use, without the freed buffer
    assert!(take_high_water() < before + BIG);
}
