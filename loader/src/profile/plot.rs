//! The report's charts, each one inline SVG (plotters' SVG backend): horizontal bars (one per
//! stage, or one bar split into parts), lines over time, and a strip of coloured bands (the verdict
//! over time). Shared by the bench report and the live-ring report (`crate::report`).
//!
//! Every chart carries `data-series` naming what it draws, so a test can check that a page holds
//! the plots it should, and each series has a colour of its own (the screenshot test looks for it).

use plotters::coord::types::RangedCoordf64;
use plotters::element::EmptyElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width of every chart, pixels.
pub const WIDTH: u32 = 760;

/// What the trainer takes (pairs/s), and its computing time.
pub const TRAINER: RGBColor = RGBColor(31, 119, 180);
/// What the loader makes (pairs/s), and its stages.
pub const LOADER: RGBColor = RGBColor(255, 127, 14);
/// Ring occupancy.
pub const OCCUPANCY: RGBColor = RGBColor(148, 103, 189);
/// Time the trainer waits for input; the input-bound verdict; the stage to attack first.
pub const WAITING: RGBColor = RGBColor(214, 39, 40);
/// The compute-bound verdict.
pub const GOOD: RGBColor = RGBColor(44, 160, 44);
/// The balanced verdict.
pub const NEUTRAL: RGBColor = RGBColor(127, 127, 127);
/// The idle verdict.
pub const IDLE: RGBColor = RGBColor(210, 210, 210);
/// The busy-cores line of the bench report.
pub const CORES: RGBColor = RGBColor(23, 190, 207);

/// One line over time.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    /// (seconds, value).
    pub points: Vec<(f64, f64)>,
}

/// One bar, or one part of a stacked bar.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub color: RGBColor,
    /// Written at the end of the bar (e.g. "2.31 ms · 41%").
    pub note: String,
}

/// One coloured stretch of time.
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub color: RGBColor,
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the report: {e:?}")
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

/// Wraps a chart's SVG so that it says what it draws.
fn tagged(svg: String, series: &[&str]) -> String {
    format!(
        "<div class=\"chart\" data-series=\"{}\">{svg}</div>",
        series.join(",")
    )
}

/// A label anchored at a point (chart coordinates) with a pixel offset: `label_at!(at, offset,
/// text, style)` (a macro: plotters does not name the composed element's type).
macro_rules! label_at {
    ($at:expr, $offset:expr, $text:expr, $style:expr $(,)?) => {
        EmptyElement::at($at) + Text::new($text, $offset, $style)
    };
}

/// The axes of a horizontal bar chart on `area`: x from 0 to `x_max` with its grid and
/// description, y from 0 to `y_max` without an axis (bars carry their own labels), `left` pixels
/// left of the plot for those labels.
fn bar_axes<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    left: u32,
    x_max: f64,
    y_max: f64,
    x_desc: &str,
) -> anyhow::Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(20)
        .x_label_area_size(34)
        .y_label_area_size(left)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .disable_y_axis()
        .y_labels(0)
        .x_labels(6)
        .x_desc(x_desc)
        .label_style(font(13))
        .draw()
        .map_err(plot_err)?;
    Ok(chart)
}

/// One horizontal bar per entry, first at the top, its label on the left and its note at its end.
pub fn hbars(bars: &[Bar], x_desc: &str) -> anyhow::Result<String> {
    let n = bars.len().max(1);
    let height = 50 + 34 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        // Room after the longest bar for its note.
        let x_max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1e-9) * 1.3;
        let mut chart = bar_axes(&root, 120, x_max, n as f64, x_desc)?;
        let row = |i: usize| (n - 1 - i) as f64;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Rectangle::new(
                    [(0.0, row(i) + 0.18), (b.value, row(i) + 0.82)],
                    b.color.filled(),
                )
            }))
            .map_err(plot_err)?;
        let right = font(14).pos(Pos::new(HPos::Right, VPos::Center));
        let left = font(13).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, b) in bars.iter().enumerate() {
            let y = row(i) + 0.5;
            chart
                .draw_series([
                    label_at!((0.0, y), (-8, 0), b.label.clone(), right.clone()),
                    label_at!((b.value, y), (6, 0), b.note.clone(), left.clone()),
                ])
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    let names: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
    Ok(tagged(svg, &names))
}

/// One horizontal bar split into `parts` left to right, each labelled inside when it fits and in
/// the legend below regardless.
pub fn stacked_hbar(parts: &[Bar], x_desc: &str) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 150)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let total = parts.iter().map(|p| p.value).sum::<f64>().max(1e-9);
        let (area, legend) = root.split_vertically(112);
        let mut chart = bar_axes(&area, 10, total, 1.0, x_desc)?;
        let mut x = 0.0;
        let centre = font(14)
            .color(&WHITE)
            .pos(Pos::new(HPos::Center, VPos::Center));
        for p in parts {
            chart
                .draw_series([Rectangle::new(
                    [(x, 0.1), (x + p.value, 0.9)],
                    p.color.filled(),
                )])
                .map_err(plot_err)?;
            if p.value / total > 0.22 {
                chart
                    .draw_series([label_at!(
                        (x + p.value / 2.0, 0.5),
                        (0, 0),
                        p.note.clone(),
                        centre.clone(),
                    )])
                    .map_err(plot_err)?;
            }
            x += p.value;
        }
        let mut lx = 40;
        for p in parts {
            legend
                .draw(&Rectangle::new([(lx, 8), (lx + 14, 22)], p.color.filled()))
                .map_err(plot_err)?;
            let text = format!("{}: {}", p.label, p.note);
            legend
                .draw(&Text::new(
                    text.clone(),
                    (lx + 20, 15),
                    font(14).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(plot_err)?;
            lx += 40 + 8 * text.len() as i32;
        }
        root.present().map_err(plot_err)?;
    }
    let names: Vec<&str> = parts.iter().map(|b| b.label.as_str()).collect();
    Ok(tagged(svg, &names))
}

/// Lines over time with a legend; the y axis runs from 0 to `y_max`, or a little above the data.
/// With fewer than two points a line cannot be drawn: the chart says so instead of staying empty.
pub fn lines(
    series: &[Series<'_>],
    y_desc: &str,
    y_max: Option<f64>,
    height: u32,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    let drawable = series.iter().any(|s| s.points.len() >= 2);
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        // The key above the plot, where it never hides a line.
        let (key, root) = root.split_vertically(26);
        let mut lx = 74;
        for s in series {
            key.draw(&PathElement::new(
                vec![(lx, 14), (lx + 24, 14)],
                s.color.stroke_width(4),
            ))
            .map_err(plot_err)?;
            key.draw(&Text::new(
                s.name.to_string(),
                (lx + 30, 14),
                font(14).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(plot_err)?;
            lx += 50 + 8 * s.name.len() as i32;
        }
        let t_min = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(f64::INFINITY, f64::min);
        let t_min = if t_min.is_finite() { t_min } else { 0.0 };
        let t_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(t_min, f64::max)
            .max(t_min + 1e-3);
        let y_max = y_max.unwrap_or_else(|| {
            series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0, f64::max)
                .max(1e-3)
                * 1.15
        });
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .margin_right(20)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(t_min..t_max, 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_labels(8)
            .y_labels(5)
            .x_desc("seconds")
            .y_desc(y_desc)
            .label_style(font(13))
            .draw()
            .map_err(plot_err)?;
        if drawable {
            for (i, s) in series.iter().enumerate() {
                // The first line is drawn wider, so that where a later one covers it (the
                // trainer takes what the loader makes) both stay visible.
                let style = s
                    .color
                    .stroke_width(if i == 0 && series.len() > 1 { 7 } else { 3 });
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))
                    .map_err(plot_err)?;
            }
        } else {
            chart
                .draw_series([label_at!(
                    ((t_min + t_max) / 2.0, y_max / 2.0),
                    (0, 0),
                    "too few samples for a line: profile for longer".to_string(),
                    font(16).pos(Pos::new(HPos::Center, VPos::Center)),
                )])
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    let names: Vec<&str> = series
        .iter()
        .filter(|s| s.points.len() >= 2)
        .map(|s| s.name)
        .collect();
    Ok(tagged(svg, &names))
}

/// A strip of coloured stretches of time (`bands`), with a legend of the colours in `legend`.
pub fn bands(
    bands: &[Band],
    legend: &[(&str, RGBColor)],
    t_range: (f64, f64),
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 96)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (area, key) = root.split_vertically(68);
        let (t0, t1) = (t_range.0, t_range.1.max(t_range.0 + 1e-3));
        let mut chart = ChartBuilder::on(&area)
            .margin(10)
            .margin_right(20)
            .x_label_area_size(24)
            .y_label_area_size(64)
            .build_cartesian_2d(t0..t1, 0.0..1.0)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_y_axis()
            .y_labels(0)
            .x_labels(8)
            .label_style(font(13))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(
                bands
                    .iter()
                    .map(|b| Rectangle::new([(b.from, 0.0), (b.to, 1.0)], b.color.filled())),
            )
            .map_err(plot_err)?;
        let mut lx = 74;
        for (name, color) in legend {
            key.draw(&Rectangle::new([(lx, 6), (lx + 14, 20)], color.filled()))
                .map_err(plot_err)?;
            key.draw(&Text::new(
                name.to_string(),
                (lx + 20, 13),
                font(14).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(plot_err)?;
            lx += 44 + 8 * name.len() as i32;
        }
        root.present().map_err(plot_err)?;
    }
    let names: Vec<&str> = legend.iter().map(|l| l.0).collect();
    Ok(tagged(svg, &names))
}
