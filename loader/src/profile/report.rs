//! Self-contained HTML reports (inline SVG charts from [`crate::profile::plot`], inline CSS, nothing
//! fetched), so they open in any browser offline and can be attached to a bug:
//!
//! - [`live_html_report`]: a ring in use ([`crate::profile::live::LiveProfile`], `loader profile --shm`):
//!   the verdict first, then the timeline, the trainer's step and the loader's stages;
//! - [`html_report`]: the loader measured alone ([`Measurement`], `loader profile --dir`).

use std::fmt::Write as _;

use plotters::style::RGBColor;

use crate::profile::live::LiveProfile;
use crate::profile::measure::Measurement;
use crate::profile::plot::{self, Band, Bar, Series};

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em 2em;max-width:60em;color:#222}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin:1.6em 0 .3em}\
.sub{color:#666;margin-top:0}\
.verdict{padding:.8em 1.2em;border-radius:6px;color:#fff;margin:1em 0}\
.verdict b{font-size:1.6em;letter-spacing:.03em}.verdict ul{margin:.5em 0 0 0;padding-left:1.2em}\
.verdict li{margin:.25em 0}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 12px;text-align:right;border-bottom:1px solid #ddd}\
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}figcaption{color:#444;font-size:.95em}\
.keys td:nth-child(2),.keys td:nth-child(4){font-weight:bold}.run td{text-align:left}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}code{font-size:.9em}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

fn figure(html: &mut String, caption: &str, svg: &str) {
    let _ = writeln!(
        html,
        "<figure>\n<figcaption>{caption}</figcaption>\n{svg}\n</figure>"
    );
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// The colour of a verdict, in the banner and the verdict strip.
pub fn verdict_color(verdict: &str) -> RGBColor {
    match verdict {
        "input-bound" => plot::WAITING,
        "compute-bound" => plot::GOOD,
        "balanced" => plot::NEUTRAL,
        _ => plot::IDLE,
    }
}

/// Bars of the loader's stages, ms per pair; `highlight` (the stage to attack) drawn in red.
fn stage_bars(stages: &[crate::profile::measure::StageTime], highlight: Option<&str>) -> Vec<Bar> {
    let total: f64 = stages.iter().map(|s| s.seconds).sum::<f64>().max(1e-12);
    stages
        .iter()
        .map(|s| Bar {
            label: s.stage.to_string(),
            value: s.ms_per_pair,
            color: if Some(s.stage) == highlight {
                plot::WAITING
            } else {
                plot::LOADER
            },
            note: format!(
                "{:.3} ms  ({:.0}%)",
                s.ms_per_pair,
                100.0 * s.seconds / total
            ),
        })
        .collect()
}

/// The recipe's view groups and what each costs per sample, as a table.
fn groups_table(html: &mut String, recipe: &str, groups: &[crate::profile::measure::GroupTime]) {
    let total: f64 = groups
        .iter()
        .map(|g| g.ms_per_sample)
        .sum::<f64>()
        .max(1e-12);
    let _ = writeln!(
        html,
        "<h2>Views of the {} recipe</h2>\n<table class=\"run\"><tr><td>view group (views x height x width)</td><td>ms per sample</td><td>share of the views' time</td></tr>",
        escape(if recipe.is_empty() { "unnamed" } else { recipe })
    );
    for g in groups {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.1}%</td></tr>",
            escape(&g.views),
            g.ms_per_sample,
            100.0 * g.ms_per_sample / total
        );
    }
    html.push_str("</table>\n");
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("unknown".to_string(), |v| format!("{v:.digits$}"))
}

/// The report of a ring in use: verdict and findings, key numbers, verdict over time, rates,
/// occupancy, the trainer's step, the loader's stages, the run's geometry.
pub fn live_html_report(p: &LiveProfile) -> anyhow::Result<String> {
    let g = &p.geometry;
    let (t, l) = (&p.trainer, &p.loader);
    let mut html = String::new();
    writeln!(
        html,
        "<h1>Is training waiting for its input?</h1>\n<p class=\"sub\">barlow live profile of <code>{}</code>: {:.1} s, {} readings; rates averaged over {:.1} s</p>",
        escape(&g.ring),
        p.seconds,
        p.readings,
        p.window_s
    )?;
    writeln!(
        html,
        "<div class=\"verdict\" data-verdict=\"{v}\" style=\"background:{}\"><b>{}</b> &#160;the trainer waited for its input {:.0}% of the time\n<ul>",
        css(verdict_color(p.verdict.verdict)),
        p.verdict.verdict.to_uppercase(),
        100.0 * p.verdict.trainer_wait,
        v = p.verdict.verdict,
    )?;
    for f in &p.findings {
        writeln!(html, "<li>{}</li>", escape(f))?;
    }
    html.push_str("</ul></div>\n");

    writeln!(
        html,
        "<table class=\"keys\">\n<tr><th>trainer</th><th></th><th>loader</th><th></th></tr>\n\
<tr><td>takes</td><td>{:.1} pairs/s</td><td>makes</td><td>{:.1} pairs/s</td></tr>\n\
<tr><td>step</td><td>{:.1} ms = {:.1} waiting + {:.1} computing</td><td>workers / cores busy</td><td>{} / {}</td></tr>\n\
<tr><td>compute speed (never waiting)</td><td>{}</td><td>per-core rate</td><td>{} pairs per CPU-second</td></tr>\n\
<tr><td>waits for a batch</td><td>{:.0}% of the time</td><td>waits for a free slot</td><td>{:.0}% of the time</td></tr>\n\
<tr><td>ring occupancy (mean)</td><td>{:.0}%</td><td>cores to keep the trainer fed</td><td>{}</td></tr>\n</table>",
        t.pairs_per_s,
        l.pairs_per_s,
        t.ms_per_step,
        t.wait_ms_per_step,
        t.compute_ms_per_step,
        l.workers.map_or("?".to_string(), |w| w.to_string()),
        opt(l.cpu_cores_busy, 1),
        t.pairs_per_compute_s
            .map_or("unbounded (it hardly computes)".to_string(), |v| format!("{v:.1} pairs/s")),
        opt(l.pairs_per_cpu_s, 0),
        100.0 * p.verdict.trainer_wait,
        100.0 * p.verdict.loader_wait,
        100.0 * p.verdict.mean_occupancy,
        p.loader_cores_to_keep_up
            .map_or("no number: it hardly computes".to_string(), |c| format!("{c:.1}")),
    )?;

    html.push_str("<h2>Over time</h2>\n");
    let t_range = (
        p.timeline.first().map_or(0.0, |pt| pt.t - p.window_s),
        p.timeline.last().map_or(p.seconds, |pt| pt.t),
    );
    let mut bands = Vec::new();
    let mut from = t_range.0;
    for pt in &p.timeline {
        bands.push(Band {
            from,
            to: pt.t,
            color: verdict_color(pt.verdict),
        });
        from = pt.t;
    }
    let legend: Vec<(&str, RGBColor)> = p
        .verdict
        .share_over_time
        .iter()
        .map(|(v, _)| (*v, verdict_color(v)))
        .collect();
    figure(
        &mut html,
        "Verdict over time (each moment judged on the window before it)",
        &plot::bands(&bands, &legend, t_range)?,
    );
    let series = |name, color, f: fn(&crate::profile::live::LivePoint) -> f64| Series {
        name,
        color,
        points: p.timeline.iter().map(|pt| (pt.t, f(pt))).collect(),
    };
    figure(
        &mut html,
        "Pairs per second: what the loader makes and what the trainer takes",
        &plot::lines(
            &[
                series("loader makes", plot::LOADER, |pt| pt.loader_pairs_per_s),
                series("trainer takes", plot::TRAINER, |pt| pt.trainer_pairs_per_s),
            ],
            "pairs/s",
            None,
            300,
        )?,
    );
    figure(
        &mut html,
        "Ring occupancy: share of slots holding a batch not yet taken (full: the trainer is the bottleneck; empty: the loader is)",
        &plot::lines(
            &[series("ring occupancy (%)", plot::OCCUPANCY, |pt| {
                100.0 * pt.occupancy
            })],
            "% full",
            Some(105.0),
            220,
        )?,
    );

    html.push_str("<h2>The trainer's step</h2>\n");
    figure(
        &mut html,
        &format!(
            "Milliseconds per step, waiting for input vs computing (compute from {})",
            t.compute_from
        ),
        &plot::stacked_hbar(
            &[
                Bar {
                    label: "waiting for input".into(),
                    value: t.wait_ms_per_step,
                    color: plot::WAITING,
                    note: format!("{:.1} ms", t.wait_ms_per_step),
                },
                Bar {
                    label: "computing".into(),
                    value: t.compute_ms_per_step,
                    color: plot::TRAINER,
                    note: format!("{:.1} ms", t.compute_ms_per_step),
                },
            ],
            "ms per step",
        )?,
    );

    html.push_str("<h2>The loader's time per pair</h2>\n");
    let highlight = p.attack_first.as_ref().map(|a| a.stage);
    figure(
        &mut html,
        &format!(
            "Milliseconds per pair by stage, summed over the worker threads{}",
            if highlight.is_some() {
                " (red: the stage to attack first)"
            } else {
                ""
            }
        ),
        &plot::hbars(&stage_bars(&l.stages, highlight), "ms per pair")?,
    );
    groups_table(&mut html, &g.recipe, &l.groups);

    html.push_str("<h2>The run</h2>\n<table class=\"run\">\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(html, "<tr><td>{k}</td><td>{}</td></tr>", escape(&v));
    };
    row("ring", g.ring.clone());
    row("batch size", g.batch_size.to_string());
    row("recipe", g.recipe.clone());
    row("views (views x height x width)", g.views.clone());
    row("slots", g.slots.to_string());
    row(
        "dataset",
        format!(
            "{} ({} images, {} steps per epoch)",
            g.dataset.as_deref().unwrap_or("unknown"),
            g.dataset_len,
            g.steps_per_epoch
        ),
    );
    row(
        "JPEG decoder",
        g.decoder.clone().unwrap_or("unknown".into()),
    );
    row(
        "loader workers",
        g.workers.map_or("unknown".into(), |w| w.to_string()),
    );
    row("seed", g.seed.to_string());
    row(
        "rank / world size",
        format!("{} / {}", g.rank, g.world_size),
    );
    row("stream key", g.stream_key.clone());
    row(
        "loader command",
        g.loader_command.clone().unwrap_or("unknown".into()),
    );
    row(
        "trainer command",
        g.trainer_command.clone().unwrap_or("unknown".into()),
    );
    row("augmentation", g.augment_from.clone());
    html.push_str("</table>\n");
    if let Some(a) = &g.augment {
        writeln!(
            html,
            "<details><summary>augmentation settings in effect</summary><pre>{}</pre></details>",
            escape(&serde_json::to_string_pretty(a)?)
        )?;
    }
    Ok(page(
        &format!("barlow live profile: {}", p.verdict.verdict),
        &html,
    ))
}

/// The report of the loader measured alone: stage bars, smoothed throughput, busy cores.
pub fn html_report(m: &Measurement, source: &str, target: Option<f64>) -> anyhow::Result<String> {
    let mut html = String::new();
    writeln!(
        html,
        "<h1>barlow loader profile</h1>\n<p class=\"sub\">The loader alone, into memory (no trainer, no ring): its ceiling. Source: {}</p>",
        escape(source)
    )?;
    writeln!(
        html,
        "<p>{} pairs in {:.1} s with {} workers: <b>{:.1} pairs/s</b>, {:.1} pairs per CPU-second ({:.2} cores busy); peak RSS {:.0} MiB; {} files skipped.</p>",
        m.pairs,
        m.wall_s,
        m.workers,
        m.pairs_per_s,
        m.pairs_per_cpu_s,
        m.busy_cores,
        m.peak_rss_bytes as f64 / (1 << 20) as f64,
        m.skipped_files
    )?;
    if let Some(t) = target {
        writeln!(html, "<p>A target of {t:.0} pairs/s needs about <b>{:.1} cores</b> at this per-core rate.</p>", m.cores_for(t))?;
    }
    figure(
        &mut html,
        "Milliseconds per pair by stage, summed over the worker threads",
        &plot::hbars(&stage_bars(&m.stages, None), "ms per pair")?,
    );
    groups_table(&mut html, &m.recipe, &m.groups);
    let series = |name, color, f: fn(&crate::profile::measure::TimePoint) -> f64| Series {
        name,
        color,
        points: m.timeline.iter().map(|p| (p.t, f(p))).collect(),
    };
    figure(
        &mut html,
        "Throughput over time (pairs/s, averaged over a window of several batches)",
        &plot::lines(
            &[series("pairs/s", plot::LOADER, |p| p.pairs_per_s)],
            "pairs/s",
            None,
            280,
        )?,
    );
    figure(
        &mut html,
        "Cores busy over time (process CPU time / wall time)",
        &plot::lines(
            &[series("cores busy", plot::CORES, |p| p.busy_cores)],
            "cores busy",
            None,
            240,
        )?,
    );
    Ok(page("barlow loader profile", &html))
}
