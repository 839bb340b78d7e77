//! Plots as SVG and PNG with `plotters`, using a bundled font (DejaVu Sans, see
//! `assets/DejaVuSans.LICENSE`) so that PNGs render identically on a machine with no fonts.
//!
//! A figure implements [`Figure`] (one `draw` generic over the backend); [`save_svg_png`]
//! draws it twice. Most figures are grids of line panels: [`Panel`] and [`PanelGrid`].

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The font family used by every text style.
pub const FONT: &str = "sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Registers the bundled font under [`FONT`] (idempotent).
pub fn register_font() {
    REGISTER.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The bundled file is a valid TrueType font (checked by a test).
            let _ = plotters::style::register_font(FONT, style, FONT_BYTES);
        }
    });
}

/// A fixed, colour-blind-friendly palette (Okabe–Ito), indexed by series.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

/// Turns a plotters error (generic over the backend) into `anyhow`.
pub fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// Something that can draw itself on any plotters backend.
pub trait Figure {
    /// Draws onto `area` (already filled white).
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draws `figure` to `<dir>/<stem>.svg` and `<dir>/<stem>.png` (size in pixels); returns the
/// two file names.
pub fn save_svg_png(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    figure: &impl Figure,
) -> Result<[String; 2]> {
    register_font();
    let (svg_name, png_name) = (format!("{stem}.svg"), format!("{stem}.png"));
    {
        let path = dir.join(&svg_name);
        let area = SVGBackend::new(&path, size).into_drawing_area();
        area.fill(&WHITE).map_err(plot_err)?;
        figure.draw(&area)?;
        area.present().map_err(plot_err)?;
    }
    {
        let path = dir.join(&png_name);
        let area = BitMapBackend::new(&path, size).into_drawing_area();
        area.fill(&WHITE).map_err(plot_err)?;
        figure.draw(&area)?;
        area.present().map_err(plot_err)?;
    }
    Ok([svg_name, png_name])
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// A solid line.
    Line,
    /// A dashed line.
    Dashed,
    /// Points only.
    Points,
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label (empty: no legend entry).
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Index into [`PALETTE`].
    pub color: usize,
    /// Line, dashed or points.
    pub style: Style,
}

impl Series {
    /// A solid line.
    pub fn line(label: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            color,
            style: Style::Line,
        }
    }

    /// With another style.
    pub fn styled(mut self, style: Style) -> Self {
        self.style = style;
        self
    }
}

/// One panel: a titled chart of series, linear or log axes.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Log-scaled y axis (non-positive values are dropped).
    pub log_y: bool,
    /// Log-scaled x axis (non-positive values are dropped).
    pub log_x: bool,
    /// The series.
    pub series: Vec<Series>,
    /// Where the legend goes (`None`: no legend).
    pub legend: Option<SeriesLabelPosition>,
}

/// Tick labels: `1e-10` on log axes, at most three decimals otherwise.
fn tick(v: f64, log: bool) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if log || v.abs() >= 1e5 || v.abs() < 1e-3 {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

impl Panel {
    /// A panel with linear axes.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_y: false,
            log_x: false,
            series: Vec::new(),
            legend: Some(SeriesLabelPosition::UpperRight),
        }
    }

    /// Moves (or with `None` hides) the legend.
    pub fn legend(mut self, at: Option<SeriesLabelPosition>) -> Self {
        self.legend = at;
        self
    }

    /// Sets a log y axis.
    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }

    /// Sets a log x axis.
    pub fn log_x(mut self, on: bool) -> Self {
        self.log_x = on;
        self
    }

    /// Adds a series.
    pub fn with(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    fn usable(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0) && (!self.log_y || y > 0.0)
    }

    /// The data range, padded (multiplicatively on log axes).
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&p| self.usable(p));
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for (x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (1e-3, 1.0, 1e-3, 1.0);
        }
        let pad = |lo: f64, hi: f64, log: bool| {
            if log {
                let (l, h) = (lo.log10(), hi.log10());
                let p = ((h - l) * 0.05).max(0.1);
                (10f64.powf(l - p), 10f64.powf(h + p))
            } else {
                let p = ((hi - lo) * 0.05).max(1e-9 * hi.abs().max(1.0));
                (lo - p, hi + p)
            }
        };
        (pad(x0, x1, self.log_x), pad(y0, y1, self.log_y))
    }

    /// Draws the panel onto `area`.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT, 18))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(62);
        macro_rules! finish {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(&self.x_label)
                    .y_desc(&self.y_label)
                    .label_style((FONT, 13))
                    .axis_desc_style((FONT, 14))
                    .x_labels(6)
                    .y_labels(6)
                    .x_label_formatter(&|v| tick(*v, self.log_x))
                    .y_label_formatter(&|v| tick(*v, self.log_y))
                    .light_line_style(WHITE.mix(0.0))
                    .draw()
                    .map_err(plot_err)?;
                let mut any_label = false;
                for s in &self.series {
                    let color = PALETTE[s.color % PALETTE.len()];
                    let pts: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|&p| self.usable(p))
                        .collect();
                    let anno = match s.style {
                        Style::Line => chart
                            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                            .map_err(plot_err)?,
                        Style::Dashed => chart
                            .draw_series(DashedLineSeries::new(pts, 6, 4, color.stroke_width(2)))
                            .map_err(plot_err)?,
                        Style::Points => chart
                            .draw_series(pts.into_iter().map(|p| Circle::new(p, 2, color.filled())))
                            .map_err(plot_err)?,
                    };
                    if !s.label.is_empty() {
                        any_label = true;
                        anno.label(s.label.as_str()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                        });
                    }
                }
                if let (true, Some(at)) = (any_label, self.legend.clone()) {
                    chart
                        .configure_series_labels()
                        .label_font((FONT, 13))
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK.mix(0.3))
                        .position(at)
                        .draw()
                        .map_err(plot_err)?;
                }
            }};
        }
        match (self.log_x, self.log_y) {
            (false, false) => finish!(builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(plot_err)?),
            (false, true) => finish!(builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(plot_err)?),
            (true, false) => finish!(builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(plot_err)?),
            (true, true) => finish!(builder
                .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(plot_err)?),
        }
        Ok(())
    }
}

/// Panels in a grid of `cols` columns, filled row by row, with an optional overall title.
#[derive(Debug, Clone)]
pub struct PanelGrid {
    /// Overall title (empty: none).
    pub title: String,
    /// Number of columns.
    pub cols: usize,
    /// The panels.
    pub panels: Vec<Panel>,
}

impl Figure for PanelGrid {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let area = if self.title.is_empty() {
            area.clone()
        } else {
            area.titled(&self.title, (FONT, 22)).map_err(plot_err)?
        };
        let cols = self.cols.max(1);
        let rows = self.panels.len().div_ceil(cols).max(1);
        for (panel, cell) in self.panels.iter().zip(area.split_evenly((rows, cols))) {
            panel.draw(&cell)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_font_parses() {
        assert!(ab_glyph_parses(FONT_BYTES));
    }

    fn ab_glyph_parses(bytes: &'static [u8]) -> bool {
        plotters::style::register_font("tsm-test-font", FontStyle::Normal, bytes).is_ok()
    }
}
