//! Plots rendered to SVG strings with `plotters`' SVG backend, for inlining in the page.
//! Logarithmic axes are drawn by plotting `log10` of the data with `10^t` tick labels.

use plotters::prelude::*;

use super::{Plot, SeriesKind};
use crate::error::CliError;

/// Okabe–Ito colour-blind-safe palette.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

fn tr(v: f64, log: bool) -> Option<f64> {
    let t = if log {
        if v > 0.0 { v.log10() } else { return None }
    } else {
        v
    };
    t.is_finite().then_some(t)
}

fn tick(t: f64, log: bool, span: f64) -> String {
    if !log && t.abs() < 1e-9 * span {
        return "0".into();
    }
    if log {
        let r = t.round();
        if (t - r).abs() < 1e-9 {
            format!("1e{}", r as i64)
        } else {
            super::fmt_num(10f64.powf(t))
        }
    } else {
        super::fmt_num(t)
    }
}

/// The data range padded by 4% (and by `top` of the span above, room for the legend).
fn range(vals: impl Iterator<Item = f64>, top: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 * (1.0 + lo.abs()) {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.04 * (hi - lo);
    (lo - pad, hi + pad + top * (hi - lo))
}

fn perr<E: std::fmt::Debug>(title: &str) -> impl Fn(E) -> CliError + '_ {
    move |e| CliError::Experiment {
        id: "plot".into(),
        message: format!("drawing '{title}': {e:?}"),
    }
}

/// Renders `plot` as an SVG document of `width × height` pixels.
///
/// # Errors
/// [`CliError::Experiment`] if `plotters` fails to draw.
pub fn render_svg(plot: &Plot, width: u32, height: u32) -> Result<String, CliError> {
    let mut out = String::new();
    {
        let err = perr(&plot.title);
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let pts: Vec<Vec<(f64, f64)>> = plot
            .series
            .iter()
            .map(|s| {
                s.x.iter()
                    .zip(&s.y)
                    .filter_map(|(&x, &y)| Some((tr(x, plot.log_x)?, tr(y, plot.log_y)?)))
                    .collect()
            })
            .collect();
        let legend_rows = plot.series.iter().filter(|s| !s.name.is_empty()).count();
        let (x0, x1) = range(pts.iter().flatten().map(|p| p.0), 0.0);
        let (y0, y1) = range(pts.iter().flatten().map(|p| p.1), 0.07 * legend_rows as f64);
        let mut chart = ChartBuilder::on(&root)
            .caption(&plot.title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(&err)?;
        let (lx, ly) = (plot.log_x, plot.log_y);
        let (xs, ys) = (x1 - x0, y1 - y0);
        let xf = move |v: &f64| tick(*v, lx, xs);
        let yf = move |v: &f64| tick(*v, ly, ys);
        chart
            .configure_mesh()
            .x_desc(plot.x_label.as_str())
            .y_desc(plot.y_label.as_str())
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(&err)?;
        for (s, p) in plot.series.iter().zip(pts) {
            let color = PALETTE[s.color % PALETTE.len()];
            // An empty name draws the series without a legend entry.
            let named = !s.name.is_empty();
            match s.kind {
                SeriesKind::Line => {
                    let a = chart
                        .draw_series(LineSeries::new(p, color.stroke_width(2)))
                        .map_err(&err)?;
                    if named {
                        a.label(s.name.as_str()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                        });
                    }
                }
                SeriesKind::Dashed => {
                    let a = chart
                        .draw_series(DashedLineSeries::new(p, 6, 4, color.stroke_width(2)))
                        .map_err(&err)?;
                    if named {
                        a.label(s.name.as_str()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 7, y)], color.stroke_width(2))
                        });
                    }
                }
                SeriesKind::Points => {
                    let a = chart
                        .draw_series(
                            p.into_iter()
                                .map(|q| Circle::new(q, 3, color.mix(0.75).filled())),
                        )
                        .map_err(&err)?;
                    if named {
                        a.label(s.name.as_str())
                            .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.filled()));
                    }
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(out)
}
