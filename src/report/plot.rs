//! SVG charts (plotters): one chart shape (title, a subtitle saying what was
//! held fixed, axis labels, the legend in its own column to the right of the
//! data), the palette and marker shapes, and line plots of labelled series
//! with error bars over seeds.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::GdaError;

/// A plotting error as an I/O error; `svg_chart` names the file.
pub fn plot_err(e: impl std::fmt::Display) -> GdaError {
    GdaError::Io { what: "cannot draw", path: Default::default(), source: std::io::Error::other(e.to_string()) }
}

pub type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The chart's size without the legend column, in pixels.
pub const CHART_SIZE: (u32, u32) = (720, 480);

/// One legend line: a short stroke (dashed or solid) with the series' marker.
#[derive(Debug, Clone)]
pub struct LegendEntry {
    pub label: String,
    pub color: RGBColor,
    /// Index into the marker shapes; None: a line without markers.
    pub marker: Option<usize>,
    pub dashed: bool,
}

impl LegendEntry {
    /// The entry for series `i` of a chart: colour and marker `i`.
    pub fn styled(i: usize, label: impl Into<String>, dashed: bool) -> LegendEntry {
        LegendEntry { label: label.into(), color: color(i), marker: Some(i), dashed }
    }
}

/// Titles of a chart: what it shows, and (smaller, below) what every series
/// shares, such as the budget policy, steps and tokens.
#[derive(Debug, Clone, Default)]
pub struct Titles<'a> {
    pub title: &'a str,
    pub held: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Pixels of legend text per character: plotters' estimate for 13 px
/// sans-serif runs short of what renderers draw, so this is generous.
const LEGEND_CHAR_PX: u32 = 7;
const LEGEND_FONT: u32 = 13;
const LEGEND_ROW_PX: i32 = 20;

/// The width of the legend column for these labels (none without entries).
fn legend_width(legend: &[LegendEntry]) -> u32 {
    match legend.iter().map(|e| e.label.chars().count()).max() {
        None => 0,
        Some(chars) => 56 + LEGEND_CHAR_PX * chars as u32,
    }
}

/// An SVG chart of `CHART_SIZE` with the legend in a column to its right
/// (the SVG is widened to fit it, so no entry covers data); `draw` adds the
/// series. `integer_x`: labels only at whole numbers (layers, contexts).
pub fn svg_chart(
    path: &Path,
    titles: &Titles,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    integer_x: bool,
    legend: &[LegendEntry],
    draw: impl FnOnce(&mut Chart) -> Result<(), GdaError>,
) -> Result<(), GdaError> {
    // plotters' errors carry no path: name the file here.
    let named = |e: GdaError| match e {
        GdaError::Io { what, source, .. } => GdaError::Io { what, path: path.to_path_buf(), source },
        other => other,
    };
    let drawn = || -> Result<(), GdaError> {
        let lw = legend_width(legend);
        let root = SVGBackend::new(path, (CHART_SIZE.0 + lw, CHART_SIZE.1)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut body = root.titled(titles.title, ("sans-serif", 18)).map_err(plot_err)?;
        if !titles.held.is_empty() {
            body = body
                .titled(titles.held, ("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80)))
                .map_err(plot_err)?;
        }
        let (plot_area, legend_area) = body.split_horizontally(CHART_SIZE.0);
        let x_labels = if integer_x { ((x.end - x.start).floor() as usize + 1).clamp(2, 10) } else { 10 };
        let (x_fmt, y_fmt) = (tick_format(&x, x_labels), tick_format(&y, 10));
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_labels(x_labels)
            .y_labels(10)
            .x_label_formatter(&|v: &f64| if integer_x && v.fract() != 0.0 { String::new() } else { x_fmt(*v) })
            .y_label_formatter(&|v: &f64| y_fmt(*v))
            .x_desc(titles.x)
            .y_desc(titles.y)
            .draw()
            .map_err(plot_err)?;
        draw(&mut chart)?;
        draw_legend(&legend_area, legend)?;
        root.present().map_err(plot_err)
    };
    drawn().map_err(named)
}

/// Tick labels with as many decimals as the tick spacing needs (so two
/// ticks never print alike), trailing zeros trimmed.
fn tick_format(range: &std::ops::Range<f64>, ticks: usize) -> impl Fn(f64) -> String {
    // Large values (token counts) in the SI units of the tables (`400K`,
    // `1.2M`: report::units::human_count), not as raw integers.
    let big = range.start.abs().max(range.end.abs());
    let (scale, suffix) = match big {
        b if b >= 1e9 => (1e9, "B"),
        b if b >= 1e6 => (1e6, "M"),
        b if b >= 1e4 => (1e3, "K"),
        _ => (1.0, ""),
    };
    let step = (range.end - range.start).abs() / ticks.max(1) as f64 / scale;
    let digits =
        if step > 0.0 && step.is_finite() { (1.0 - step.log10().floor()).clamp(0.0, 10.0) as usize } else { 3 };
    move |v: f64| {
        let s = format!("{:.digits$}", v / scale);
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
        match s.as_str() {
            "0" | "-0" => "0".into(),
            _ => format!("{s}{suffix}"),
        }
    }
}

#[cfg(test)]
mod tick_tests {
    use super::tick_format;

    #[test]
    fn large_ticks_use_si_units_and_small_ones_stay_plain() {
        let tokens = tick_format(&(0.0..400_000.0), 8);
        assert_eq!([tokens(0.0), tokens(50_000.0), tokens(400_000.0)], ["0", "50K", "400K"]);
        let m = tick_format(&(0.0..2_500_000.0), 10);
        assert_eq!(m(1_250_000.0), "1.25M");
        let loss = tick_format(&(2.0..4.0), 10);
        assert_eq!([loss(2.2), loss(3.0)], ["2.2", "3"]);
    }
}

/// The legend: one row per entry, top-down, in its own drawing area.
fn draw_legend(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, legend: &[LegendEntry]) -> Result<(), GdaError> {
    let top = 24;
    for (i, e) in legend.iter().enumerate() {
        let y = top + LEGEND_ROW_PX * i as i32;
        let (x0, x1) = (10, 36);
        let style = e.color.stroke_width(2);
        if e.dashed {
            area.draw(&PathElement::new(vec![(x0, y), (x0 + 8, y)], style)).map_err(plot_err)?;
            area.draw(&PathElement::new(vec![(x1 - 8, y), (x1, y)], style)).map_err(plot_err)?;
        } else {
            area.draw(&PathElement::new(vec![(x0, y), (x1, y)], style)).map_err(plot_err)?;
        }
        if let Some(m) = e.marker {
            let c = ((x0 + x1) / 2, y);
            let pts = marker_shape(m, 4).into_iter().map(|(dx, dy)| (c.0 + dx, c.1 + dy)).collect::<Vec<_>>();
            area.draw(&Polygon::new(pts, e.color.filled())).map_err(plot_err)?;
        }
        let font = TextStyle::from(("sans-serif", LEGEND_FONT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(e.label.clone(), (x1 + 8, y), font)).map_err(plot_err)?;
    }
    Ok(())
}

/// Twenty colours, no two alike before the palette repeats: the ten of
/// matplotlib's tab10, then the darker halves of tab20b's hues.
pub const COLORS: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(57, 59, 121),
    RGBColor(99, 121, 57),
    RGBColor(140, 109, 49),
    RGBColor(132, 60, 57),
    RGBColor(123, 65, 115),
    RGBColor(82, 84, 163),
    RGBColor(181, 207, 107),
    RGBColor(231, 186, 82),
    RGBColor(214, 97, 107),
    RGBColor(206, 109, 189),
];

/// Marker shapes: circle, square, triangle up, diamond, triangle down,
/// plus, pentagon. Seven (prime to the twenty colours), so a (colour,
/// marker) pair repeats only after 140 series.
pub const MARKERS: usize = 7;

/// Colour of series `i`.
pub fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The outline of marker `i` around (0, 0), `r` pixels in radius.
pub fn marker_shape(i: usize, r: i32) -> Vec<(i32, i32)> {
    let poly = |n: usize, phase: f64, rad: f64| -> Vec<(i32, i32)> {
        (0..n)
            .map(|k| {
                let a = phase + std::f64::consts::TAU * k as f64 / n as f64;
                ((rad * a.cos()).round() as i32, (rad * a.sin()).round() as i32)
            })
            .collect()
    };
    let rf = r as f64;
    match i % MARKERS {
        0 => poly(12, 0.0, rf),
        1 => vec![(-r, -r), (r, -r), (r, r), (-r, r)],
        2 => vec![(0, -r - 1), (r + 1, r), (-r - 1, r)],
        3 => vec![(0, -r - 1), (r + 1, 0), (0, r + 1), (-r - 1, 0)],
        4 => vec![(0, r + 1), (r + 1, -r), (-r - 1, -r)],
        5 => {
            let (a, b) = (r / 3 + 1, r + 1);
            vec![
                (-a, -b),
                (a, -b),
                (a, -a),
                (b, -a),
                (b, a),
                (a, a),
                (a, b),
                (-a, b),
                (-a, a),
                (-b, a),
                (-b, -a),
                (-a, -a),
            ]
        }
        _ => poly(5, -std::f64::consts::FRAC_PI_2, rf + 1.0),
    }
}

/// Draws marker `m` at each point, in `color`.
pub fn draw_markers(
    chart: &mut Chart,
    pts: impl IntoIterator<Item = (f64, f64)>,
    m: usize,
    r: i32,
    style: ShapeStyle,
) -> Result<(), GdaError> {
    let shape = marker_shape(m, r);
    chart
        .draw_series(pts.into_iter().map(|p| EmptyElement::at(p) + Polygon::new(shape.clone(), style)))
        .map_err(plot_err)?;
    Ok(())
}

/// Draws vertical error bars (mean ± err) with caps.
pub fn draw_error_bars(
    chart: &mut Chart,
    pts: impl IntoIterator<Item = (f64, f64, f64)>,
    color: RGBColor,
) -> Result<(), GdaError> {
    chart
        .draw_series(
            pts.into_iter()
                .filter(|p| p.2 > 0.0 && p.2.is_finite())
                .map(|(x, y, e)| ErrorBar::new_vertical(x, y - e, y, y + e, color.stroke_width(1), 8)),
        )
        .map_err(plot_err)?;
    Ok(())
}

/// The grey kept for reference lines (a baseline).
pub const GREY: RGBColor = RGBColor(127, 127, 127);

/// An axis range around `vals` with 10% padding. A single value or a flat
/// series still gets a readable range (at least 2% of its magnitude wide,
/// and at least 0.02) rather than one so narrow that every tick label reads
/// the same; a spread series keeps its data filling the axis.
pub fn bounds(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        return None;
    }
    let min_span = (0.02 * lo.abs().max(hi.abs())).max(0.02);
    let pad = ((hi - lo) * 0.1).max((min_span - (hi - lo)) / 2.0);
    Some((lo - pad, hi + pad))
}

/// An axis range for whole-number positions (contexts, layers, ratios):
/// half a unit (or 10%) beyond the outer values, and one unit either side of
/// a single value, so its whole-number neighbours are ticks too.
pub fn integer_bounds(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        return None;
    }
    let pad = if hi == lo { 1.0 } else { (0.1 * (hi - lo)).max(0.5) };
    Some((lo - pad, hi + pad))
}

/// One series of a line plot: a point per x with, where several seeds
/// stand behind it, its std over seeds (drawn as an error bar).
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    /// (x, y, std over seeds; 0 or NaN: none).
    pub points: Vec<(f64, f64, f64)>,
    pub dashed: bool,
    /// Colour and marker index: a dashed companion of a solid line shares it.
    pub style: usize,
}

impl Line {
    /// A line without error bars.
    pub fn plain(label: impl Into<String>, pts: &[(f64, f64)], style: usize, dashed: bool) -> Line {
        Line { label: label.into(), points: pts.iter().map(|p| (p.0, p.1, 0.0)).collect(), dashed, style }
    }
}

/// A line chart of labelled series with markers, error bars and the legend
/// to the right of the data.
pub fn plot_lines(path: &Path, titles: &Titles, integer_x: bool, lines: &[Line]) -> Result<(), GdaError> {
    let err = |e: f64| if e.is_finite() { e } else { 0.0 };
    let xs = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = || lines.iter().flat_map(|l| l.points.iter().flat_map(move |p| [p.1 - err(p.2), p.1 + err(p.2)]));
    let (xlo, xhi) = if integer_x { integer_bounds(xs()) } else { bounds(xs()) }.unwrap_or((0.0, 1.0));
    let (ylo, yhi) = bounds(ys()).unwrap_or((0.0, 1.0));
    let legend: Vec<LegendEntry> =
        lines.iter().map(|l| LegendEntry::styled(l.style, l.label.clone(), l.dashed)).collect();
    // Lines with error bars at the same x are drawn a few pixels apart
    // (ggplot's position dodge), else the bars of one hide another's.
    let plot_px = (CHART_SIZE.0 - 100) as f64;
    let dodge = if lines.len() > 1 && lines.iter().any(|l| l.points.iter().any(|p| err(p.2) > 0.0)) {
        (5.0f64).min(60.0 / lines.len() as f64) * (xhi - xlo) / plot_px
    } else {
        0.0
    };
    svg_chart(path, titles, (xlo..xhi, ylo..yhi), integer_x, &legend, |chart| {
        for (i, l) in lines.iter().enumerate() {
            let c = color(l.style);
            let shift = dodge * (i as f64 - (lines.len() - 1) as f64 / 2.0);
            let xy: Vec<(f64, f64)> = l.points.iter().map(|p| (p.0 + shift, p.1)).collect();
            if l.dashed {
                chart.draw_series(DashedLineSeries::new(xy.clone(), 6, 4, c.stroke_width(2))).map_err(plot_err)?;
            } else {
                chart.draw_series(LineSeries::new(xy.clone(), c.stroke_width(2))).map_err(plot_err)?;
            }
            draw_error_bars(chart, l.points.iter().map(|p| (p.0 + shift, p.1, p.2)), c)?;
            // Dashed companions get hollow-looking (lighter) markers.
            let style = if l.dashed { c.mix(0.5).filled() } else { c.filled() };
            draw_markers(chart, xy, l.style, 4, style)?;
        }
        Ok(())
    })
}
