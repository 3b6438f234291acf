//! PNG plots drawn with plotters' bitmap backend and an embedded font (DejaVu Sans via the
//! `dejavu` crate, rendered by `ab_glyph`): no system font library is needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::EvalError;
use crate::report::{per_subject, summarize, Report};

const FONT: &str = "sans-serif";
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

fn ensure_font() -> Result<(), String> {
    static FONT_OK: OnceLock<bool> = OnceLock::new();
    let ok = *FONT_OK.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("the embedded DejaVu Sans font could not be loaded".into())
    }
}

fn perr(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |reason| EvalError::Plot {
        path: path.to_path_buf(),
        reason,
    }
}

/// A file-name-safe version of `s`.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Draws every plot of `report` into `dir`; returns the files written.
pub fn draw_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let mut out = Vec::new();
    if report.methods.is_empty() {
        return Ok(out);
    }
    let p = dir.join("per_subject.png");
    per_subject_bars(report, &p).map_err(perr(&p))?;
    out.push(p);
    for m in &report.methods {
        let p = dir.join(format!("confusion_{}.png", slug(&m.label())));
        let sm = summarize(m, report.classes.len());
        confusion_plot(&m.label(), &report.classes, &sm.confusion, &p).map_err(perr(&p))?;
        out.push(p);
    }
    Ok(out)
}

/// Per-subject balanced accuracy, one bar per method, with the chance line (1 / n_classes).
fn per_subject_bars(report: &Report, path: &Path) -> Result<(), String> {
    ensure_font()?;
    let per: Vec<_> = report.methods.iter().map(per_subject).collect();
    let mut subjects: Vec<String> = per.iter().flat_map(|p| p.keys().cloned()).collect();
    subjects.sort();
    subjects.dedup();
    let n = subjects.len().max(1);
    let nm = report.methods.len();
    let width = (160 + n * (24 + 14 * nm)).clamp(640, 2400) as u32;
    let root = BitMapBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let chance = 1.0 / report.classes.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: balanced accuracy per test subject", report.task),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..n as f64, 0f64..1.35f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("balanced accuracy")
        .max_light_lines(0)
        .y_labels(8)
        .y_label_formatter(&|v| {
            if *v <= 1.0 {
                format!("{v:.1}")
            } else {
                String::new()
            }
        })
        .label_style((FONT, 14))
        .draw()
        .map_err(|e| e.to_string())?;
    let group = 0.8;
    let bw = group / nm as f64;
    for (j, (m, p)) in report.methods.iter().zip(&per).enumerate() {
        let color = PALETTE[j % PALETTE.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = subjects
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let v = p.get(s)?.0.mean;
                if !v.is_finite() {
                    return None;
                }
                let x0 = i as f64 + 0.1 + j as f64 * bw;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + bw * 0.92, v)],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(m.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, chance), (n as f64, chance)],
            RED.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(format!("chance ({chance:.2})"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in subjects.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            s.clone(),
            (x - 4 * s.len().min(12) as i32, y + 8),
            (FONT, 13),
        ))
        .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Confusion matrix heat map with counts and row-normalized rates.
fn confusion_plot(
    title: &str,
    classes: &[String],
    confusion: &[Vec<u64>],
    path: &Path,
) -> Result<(), String> {
    ensure_font()?;
    let k = classes.len().max(1);
    let root = BitMapBackend::new(path, (520, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: confusion"), (FONT, 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..k as f64, 0f64..k as f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .disable_y_axis()
        .x_desc("predicted")
        .y_desc("true")
        .draw()
        .map_err(|e| e.to_string())?;
    for (t, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &v) in row.iter().enumerate() {
            let rate = if total > 0 {
                v as f64 / total as f64
            } else {
                0.0
            };
            let y = (k - 1 - t) as f64;
            let shade = (255.0 * (1.0 - 0.85 * rate)) as u8;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(p as f64, y), (p as f64 + 1.0, y + 1.0)],
                    RGBColor(shade, shade, 255).filled(),
                )))
                .map_err(|e| e.to_string())?;
            let (cx, cy) = chart.backend_coord(&(p as f64 + 0.5, y + 0.5));
            let color = if rate > 0.6 { WHITE } else { BLACK };
            root.draw(&Text::new(
                format!("{v} ({:.0}%)", 100.0 * rate),
                (cx - 32, cy - 8),
                (FONT, 16).into_font().color(&color),
            ))
            .map_err(|e| e.to_string())?;
        }
    }
    for (i, c) in classes.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            c.clone(),
            (x - 4 * c.len() as i32, y + 6),
            (FONT, 14),
        ))
        .map_err(|e| e.to_string())?;
        let (x, y) = chart.backend_coord(&(0.0, (k - 1 - i) as f64 + 0.5));
        root.draw(&Text::new(
            c.clone(),
            (x - 8 * c.len() as i32 - 6, y - 7),
            (FONT, 14),
        ))
        .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
