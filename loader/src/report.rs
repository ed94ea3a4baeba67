//! A self-contained HTML report of a measurement: a stage breakdown, the throughput and the
//! cores busy over time, each drawn as an inline SVG (plotters), so it opens in any browser offline.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::measure::Measurement;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 320;

/// The whole report as one HTML document.
pub fn html_report(m: &Measurement, source: &str, target: Option<f64>) -> anyhow::Result<String> {
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>barlow loader profile</title>\n");
    html.push_str("<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}</style>\n</head>\n<body>\n");
    writeln!(
        html,
        "<h1>barlow loader profile</h1>\n<p>Source: {}</p>",
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
    html.push_str("<table>\n<tr><th>stage</th><th>ms per pair</th><th>share</th></tr>\n");
    let total: f64 = m.stages.iter().map(|s| s.seconds).sum::<f64>().max(1e-12);
    for s in &m.stages {
        writeln!(
            html,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.1}%</td></tr>",
            s.stage,
            s.ms_per_pair,
            100.0 * s.seconds / total
        )?;
    }
    html.push_str("</table>\n");
    let figures = [
        (
            "Time per pair by stage (ms, summed over threads)",
            stage_chart(m)?,
        ),
        (
            "Throughput over time (pairs/s)",
            line_chart(
                &m.timeline
                    .iter()
                    .map(|p| (p.t, p.pairs_per_s))
                    .collect::<Vec<_>>(),
                "pairs/s",
                None,
            )?,
        ),
        (
            "Cores busy over time (process CPU time / wall time)",
            line_chart(
                &m.timeline
                    .iter()
                    .map(|p| (p.t, p.busy_cores))
                    .collect::<Vec<_>>(),
                "cores busy",
                None,
            )?,
        ),
    ];
    for (caption, svg) in figures {
        writeln!(
            html,
            "<figure>\n{svg}\n<figcaption>{caption}</figcaption>\n</figure>"
        )?;
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the report: {e:?}")
}

/// Horizontal bars: milliseconds per pair for each stage.
fn stage_chart(m: &Measurement) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let max = m
            .stages
            .iter()
            .map(|s| s.ms_per_pair)
            .fold(0.0, f64::max)
            .max(1e-6)
            * 1.1;
        let n = m.stages.len();
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(110)
            .build_cartesian_2d(0.0..max, (0..n).into_segmented())
            .map_err(plot_err)?;
        let names: Vec<&str> = m.stages.iter().map(|s| s.stage).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("ms per pair")
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).copied().unwrap_or("").to_string(),
                SegmentValue::Exact(_) | SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(m.stages.iter().enumerate().map(|(i, s)| {
                Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (s.ms_per_pair, SegmentValue::Exact(i + 1)),
                    ],
                    BLUE.mix(0.6).filled(),
                )
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// A line over time; the y axis runs to `y_max`, or a little above the data when None.
fn line_chart(points: &[(f64, f64)], y_desc: &str, y_max: Option<f64>) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let t_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-3);
        let y_max =
            y_max.unwrap_or_else(|| points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), &RED))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}
