//! The end of a `loader` run: the summary line, the skipped files, the verdict, `--json`, and the
//! `--bad-files` report.

use anyhow::Context;

use crate::ring_sink::RingSummary;
use crate::sink::{BadFile, RunReport};

/// Prints the run's summary and verdict on stderr and, with `json`, one JSON object on stdout
/// (fields: batches, pairs, seconds, pairs_per_s, batches_consumed, skipped_files, bad_files
/// [{file, reason}], interrupted, producer_wait, consumer_wait, verdict).
pub fn print(
    report: &RunReport,
    dataset_len: usize,
    ring: &RingSummary,
    interrupted: bool,
    json: bool,
) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "loader: done: {} batches, {} pairs in {:.1}s = {:.1} pairs/s; {} batches taken by the trainer; {} of {} files skipped{}",
        report.batches,
        report.pairs,
        secs,
        report.pairs as f64 / secs,
        ring.consumed,
        report.bad_files.len(),
        dataset_len,
        if report.interrupted { " (interrupted)" } else { "" },
    );
    for bad in report.bad_files.iter().take(20) {
        eprintln!("loader:   skipped {}: {}", bad.name, bad.reason);
    }
    if report.bad_files.len() > 20 {
        eprintln!("loader:   ... and {} more", report.bad_files.len() - 20);
    }
    eprintln!(
        "loader: verdict: {} (loader waited for free slots {:.0}% of the time, trainer waited for batches {:.0}%): {}",
        ring.verdict,
        100.0 * ring.producer_wait,
        100.0 * ring.consumer_wait,
        ring.verdict.advice()
    );
    if json {
        let bad: Vec<_> = report
            .bad_files
            .iter()
            .map(|b| serde_json::json!({"file": b.name, "reason": b.reason}))
            .collect();
        let summary = serde_json::json!({
            "batches": report.batches,
            "pairs": report.pairs,
            "seconds": secs,
            "pairs_per_s": report.pairs as f64 / secs,
            "batches_consumed": ring.consumed,
            "skipped_files": report.bad_files.len(),
            "bad_files": bad,
            "interrupted": interrupted,
            "producer_wait": ring.producer_wait,
            "consumer_wait": ring.consumer_wait,
            "verdict": ring.verdict.as_str(),
        });
        println!("{summary}");
    }
}

/// `--bad-files FILE`: one `path<TAB>reason` line per file that could not be used.
pub fn write_bad_files(file: &std::path::Path, bad: &[BadFile]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(file)
            .with_context(|| format!("creating the bad-file report {}", file.display()))?,
    );
    for b in bad {
        writeln!(out, "{}\t{}", b.name, b.reason.replace(['\t', '\n'], " "))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", file.display()))
}
