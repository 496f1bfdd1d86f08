//! Pictures the applications write as PNG: line plots of objective against time (drawn with
//! `plotters` into an RGB buffer, then encoded by the `image` crate), and the filter bank RICA
//! learned, as a grid of tiles.
//!
//! Text (tick labels, axis titles, legend) needs a TrueType font, read at run time so the build
//! needs no font libraries: the file named by `FERROPS_FONT`, else the first of [`FONT_PATHS`]
//! that exists (Debian's `fonts-dejavu-core` provides the first). With no usable font the plot
//! is still drawn, without text, and [`LinePlot::write`] says so in its outcome.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

/// Series colours, in order: blue, orange, green, red, purple, brown, pink, grey.
pub const COLOURS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// Where fonts are looked for when `FERROPS_FONT` is not set.
pub const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// The family name plots ask plotters for.
const FAMILY: &str = "sans-serif";

/// Why a picture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing the plot: {0}")]
    Draw(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: image::ImageError,
    },
    #[error("nothing to draw: {0}")]
    Empty(&'static str),
}

/// Whether the font could be loaded, and if not, why (decided once per process).
fn font() -> &'static Result<String, String> {
    static FONT: OnceLock<Result<String, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<String> = match std::env::var("FERROPS_FONT") {
            Ok(p) if !p.is_empty() => vec![p],
            _ => FONT_PATHS.iter().map(|p| p.to_string()).collect(),
        };
        for path in &candidates {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return match plotters::style::register_font(FAMILY, FontStyle::Normal, bytes) {
                Ok(()) => Ok(path.clone()),
                Err(_) => Err(format!("{path} is not a usable TrueType font")),
            };
        }
        Err(format!(
            "no font found (tried {}; set FERROPS_FONT to a .ttf file)",
            candidates.join(", ")
        ))
    })
}

/// One line of a plot.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Shown in the legend (which is drawn only when there are several series).
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A line plot: size in pixels, titles, series.
#[derive(Clone, Debug)]
pub struct LinePlot {
    pub width: u32,
    pub height: u32,
    pub title: String,
    pub x_title: String,
    pub y_title: String,
    pub series: Vec<Series>,
}

/// What [`LinePlot::write`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Drawn with text in this font file.
    WithText(String),
    /// Drawn without text, for this reason.
    WithoutText(String),
}

impl LinePlot {
    /// An 800 × 500 plot with no series.
    pub fn new(title: &str, x_title: &str, y_title: &str) -> LinePlot {
        LinePlot {
            width: 800,
            height: 500,
            title: title.into(),
            x_title: x_title.into(),
            y_title: y_title.into(),
            series: Vec::new(),
        }
    }

    /// Draws and writes the plot as PNG (whatever the file name's extension).
    pub fn write(&self, path: &Path) -> Result<Outcome, PlotError> {
        if self.width < 100 || self.height < 100 {
            return Err(PlotError::Empty(
                "the plot must be at least 100 × 100 pixels",
            ));
        }
        let text = font().clone();
        let mut buf = vec![255u8; self.width as usize * self.height as usize * 3];
        self.draw(&mut buf, text.is_ok()).map_err(PlotError::Draw)?;
        image::save_buffer_with_format(
            path,
            &buf,
            self.width,
            self.height,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|source| PlotError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(match text {
            Ok(font) => Outcome::WithText(font),
            Err(why) => Outcome::WithoutText(why),
        })
    }

    /// [`LinePlot::write`], and a warning on standard error when the plot had to be drawn
    /// without text (what every command that draws one does).
    pub fn write_or_warn(&self, path: &Path) -> Result<(), PlotError> {
        if let Outcome::WithoutText(why) = self.write(path)? {
            eprintln!("warning: {} drawn without text: {why}", path.display());
        }
        Ok(())
    }

    /// The shared ranges of every series, widened when flat or empty.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in self.series.iter().flat_map(|s| &s.points) {
            if x.is_finite() && y.is_finite() {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        // Time axes start at zero.
        x0 = x0.min(0.0);
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        let pad = if y1 - y0 < 1e-12 {
            y0.abs().max(1.0) * 0.05
        } else {
            (y1 - y0) * 0.05
        };
        ((x0, x1), (y0 - pad, y1 + pad))
    }

    fn draw(&self, buf: &mut [u8], text: bool) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let root = BitMapBackend::with_buffer(buf, (self.width, self.height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder
                .caption(&self.title, (FAMILY, 20))
                .x_label_area_size(50)
                .y_label_area_size(90);
        } else {
            builder.x_label_area_size(10).y_label_area_size(10);
        }
        let mut chart = builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE.mix(0.0));
        if text {
            mesh.x_desc(&self.x_title)
                .y_desc(&self.y_title)
                .x_labels(10)
                .y_labels(8)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .label_style((FAMILY, 14))
                .axis_desc_style((FAMILY, 16));
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(&e))?;
        for (n, s) in self.series.iter().enumerate() {
            let [r, g, b] = COLOURS[n % COLOURS.len()];
            let colour = RGBColor(r, g, b);
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            let drawn = chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| err(&e))?;
            if text {
                drawn.label(s.label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                });
            }
        }
        if text && self.series.len() > 1 {
            chart
                .configure_series_labels()
                .label_font((FAMILY, 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))
    }
}

/// A tick label: plain numbers in the usual range (at most two decimals, trailing zeros
/// dropped), scientific notation outside it.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e6).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".into()
        } else {
            s.into()
        }
    }
}

/// Writes a bank of square filters (each `side × side` values, row-major) as a grid of grey
/// tiles, `zoom` pixels per value and a white gap between tiles. Each filter is scaled on its
/// own: 0 is mid grey, its largest |value| black or white.
pub fn filter_grid(
    path: &Path,
    filters: &[Vec<f32>],
    side: usize,
    zoom: usize,
) -> Result<(u32, u32), PlotError> {
    if filters.is_empty() || side == 0 || zoom == 0 {
        return Err(PlotError::Empty("no filters"));
    }
    if filters.iter().any(|f| f.len() != side * side) {
        return Err(PlotError::Empty("a filter is not side × side values"));
    }
    let columns = (filters.len() as f64).sqrt().ceil() as usize;
    let rows = filters.len().div_ceil(columns);
    let (tile, gap) = (side * zoom, 2usize);
    let width = columns * (tile + gap) + gap;
    let height = rows * (tile + gap) + gap;
    let mut img = image::GrayImage::from_pixel(width as u32, height as u32, image::Luma([255]));
    for (n, f) in filters.iter().enumerate() {
        let scale = f.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let (ox, oy) = (
            gap + (n % columns) * (tile + gap),
            gap + (n / columns) * (tile + gap),
        );
        for (i, v) in f.iter().enumerate() {
            let grey = (127.5 + 127.5 * v / scale).round().clamp(0.0, 255.0) as u8;
            let (fx, fy) = (ox + (i % side) * zoom, oy + (i / side) * zoom);
            for dy in 0..zoom {
                for dx in 0..zoom {
                    img.put_pixel((fx + dx) as u32, (fy + dy) as u32, image::Luma([grey]));
                }
            }
        }
    }
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| PlotError::Write {
            path: path.display().to_string(),
            source,
        })?;
    Ok((width as u32, height as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(-0.001), "-1.000e-3");
        assert_eq!(tick(94968.0), "94968");
        assert_eq!(tick(163886.0), "163886");
        assert_eq!(tick(2.5e6), "2.500e6");
        assert_eq!(tick(0.001), "1.000e-3");
    }

    #[test]
    fn filter_grid_lays_out_tiles_and_scales_each_filter() {
        let dir = std::env::temp_dir().join(format!("ferrops-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.png");
        let filters = vec![vec![1.0, -1.0, 0.0, 0.5], vec![0.0, 0.0, 0.0, 2.0]];
        let (w, h) = filter_grid(&path, &filters, 2, 3).unwrap();
        assert_eq!((w, h), (2 * (6 + 2) + 2, 6 + 2 + 2));
        let img = image::open(&path).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (w, h));
        assert_eq!(img.get_pixel(2, 2).0[0], 255); // +max: white
        assert_eq!(img.get_pixel(5, 2).0[0], 0); // −max: black
        assert_eq!(img.get_pixel(2, 5).0[0], 128); // 0: mid grey
        assert_eq!(img.get_pixel(10 + 3, 2 + 3).0[0], 255);
        assert!(filter_grid(&path, &[vec![1.0; 3]], 2, 1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
