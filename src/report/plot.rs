//! SVG charts (plotters): one chart shape with caption, axis labels and
//! legend, the palette, and line plots of labelled series.

use std::path::Path;

use plotters::prelude::*;

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

/// An SVG line chart with a caption, axis labels and a legend; `draw` adds
/// the series.
pub fn svg_chart(
    path: &Path,
    caption: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    integer_x: bool,
    draw: impl FnOnce(&mut Chart) -> Result<(), GdaError>,
) -> Result<(), GdaError> {
    // plotters' errors carry no path: name the file here.
    let named = |e: GdaError| match e {
        GdaError::Io { what, source, .. } => GdaError::Io { what, path: path.to_path_buf(), source },
        other => other,
    };
    let drawn = || -> Result<(), GdaError> {
        // Whole numbers without a trailing ".0"; an integer axis (layers) gets a
        // label at every integer and none between.
        let x_labels = if integer_x { (x.end - x.start).ceil() as usize + 1 } else { 10 };
        let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)
            .map_err(plot_err)?;
        let fmt = |v: &f64| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
            }
        };
        chart
            .configure_mesh()
            .x_labels(x_labels)
            .x_label_formatter(&|v: &f64| if integer_x && v.fract() != 0.0 { String::new() } else { fmt(v) })
            .y_label_formatter(&fmt)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(plot_err)?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)
    };
    drawn().map_err(named)
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

/// The grey kept for reference lines (a baseline).
pub const GREY: RGBColor = RGBColor(127, 127, 127);

/// An axis range around `vals` with 10% padding. A single value or a flat
/// series still gets a readable range (±5% of its magnitude, at least ±0.05)
/// rather than one so narrow that every tick label reads the same.
pub fn bounds(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        return None;
    }
    let flat = (0.05 * lo.abs().max(hi.abs())).max(0.05);
    let pad = if hi - lo < flat { flat } else { (hi - lo) * 0.1 };
    Some((lo - pad, hi + pad))
}

/// A line chart of labelled series; `dashed` series (same colour as the
/// solid one at the same index) are drawn dashed.
pub fn plot_lines(
    path: &Path,
    caption: &str,
    axes_desc: (&str, &str),
    integer_x: bool,
    solid: &[(String, Vec<(f64, f64)>)],
    dashed: &[(String, Vec<(f64, f64)>)],
) -> Result<(), GdaError> {
    let all = || solid.iter().chain(dashed).flat_map(|s| s.1.iter());
    let (xlo, xhi) = bounds(all().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let (ylo, yhi) = bounds(all().map(|p| p.1)).unwrap_or((0.0, 1.0));
    svg_chart(path, caption, (xlo..xhi, ylo..yhi), axes_desc, integer_x, |chart| {
        for (i, (label, pts)) in solid.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)).point_size(3))
                .map_err(plot_err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        for (i, (label, pts)) in dashed.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
        }
        Ok(())
    })
}
