//! Arbitrary bytes as a WebDataset shard: the tar header walk and the index built on it (with a
//! `cls` label and a `json:label` field) must return samples inside the bytes or an error, never
//! panic, hang or read outside them.

#![no_main]

use datasets::wds::index::{index_shard, LabelKey};
use datasets::wds::tar::members;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in members(data).flatten() {
        assert!(m.offset + m.size <= data.len() as u64);
    }
    for key in ["cls", "json:label"] {
        let key = LabelKey::parse(key).expect("a valid label key");
        if let Ok(ix) = index_shard(data, &key) {
            for e in &ix.samples {
                assert!(e.offset + e.len <= data.len() as u64);
            }
        }
    }
});
