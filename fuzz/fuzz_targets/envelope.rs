#![no_main]
// The target body is shared with the stable property tests (tests/fuzz_props.rs).
#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::report_only_uncaught_panics();
    targets::envelope(data)
});
