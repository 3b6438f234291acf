//! Loss-curve PNG, drawn with plotters' bitmap backend. Text uses the public-domain 8×8 bitmap
//! font of the `font8x8` crate, so the build needs no system font library.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainError};
use crate::metrics::StepRecord;

const W: u32 = 960;
const H: u32 = 540;
const LEFT: i32 = 90;
const RIGHT: i32 = 30;
const TOP: i32 = 50;
const BOTTOM: i32 = 60;

/// Draws the loss of `records` against the step (raw in light blue, exponential moving average
/// in dark blue) to `path`, with `title` above. Written atomically.
pub fn loss_curve_png(records: &[StepRecord], title: &str, path: &Path) -> Result<()> {
    let perr = |reason: String| TrainError::Plot {
        path: path.to_path_buf(),
        reason,
    };
    // plotters encodes the PNG when the area is presented; draw to a temporary name beside
    // `path`, fsync it and rename it into place.
    let tmp = crate::fsutil::temp_name(path);
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, (W, H)).into_drawing_area();
        draw(&root, records, title).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(perr(e));
    }
    let done = std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::io(path, e));
    }
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult<'a> =
    std::result::Result<(), DrawingAreaErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>>;

fn draw<'a>(root: &Area<'a>, records: &[StepRecord], title: &str) -> DrawResult<'a> {
    root.fill(&WHITE)?;
    text(root, title, (LEFT, 18), 2, &BLACK)?;
    let (x0, x1, y0, y1) = (LEFT, W as i32 - RIGHT, TOP, H as i32 - BOTTOM);
    let axis = ShapeStyle::from(&BLACK).stroke_width(1);
    root.draw(&PathElement::new(vec![(x0, y0), (x0, y1), (x1, y1)], axis))?;
    let pts: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.loss.is_finite())
        .map(|r| (r.step as f64, r.loss as f64))
        .collect();
    if pts.is_empty() {
        text(root, "no steps yet", (x0 + 20, y0 + 20), 2, &BLACK)?;
        return Ok(());
    }
    let (mut smin, mut smax) = (pts[0].0, pts[pts.len() - 1].0);
    if smax <= smin {
        smin -= 1.0;
        smax += 1.0;
    }
    let mut lmin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut lmax = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if lmax - lmin < 1e-12 {
        lmin -= 0.5 * lmin.abs().max(1e-3);
        lmax += 0.5 * lmax.abs().max(1e-3);
    }
    let pad = 0.05 * (lmax - lmin);
    let (lmin, lmax) = (lmin - pad, lmax + pad);
    let px = |s: f64| x0 + ((s - smin) / (smax - smin) * (x1 - x0) as f64).round() as i32;
    let py = |l: f64| y1 - ((l - lmin) / (lmax - lmin) * (y1 - y0) as f64).round() as i32;
    let grid = ShapeStyle::from(&RGBColor(225, 225, 225)).stroke_width(1);
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let s = smin + f * (smax - smin);
        let x = px(s);
        root.draw(&PathElement::new(vec![(x, y0), (x, y1)], grid))?;
        root.draw(&PathElement::new(vec![(x, y1), (x, y1 + 5)], axis))?;
        let label = format!("{}", s.round() as i64);
        text(
            root,
            &label,
            (x - 4 * label.len() as i32, y1 + 10),
            1,
            &BLACK,
        )?;
        let l = lmin + f * (lmax - lmin);
        let y = py(l);
        root.draw(&PathElement::new(vec![(x0, y), (x1, y)], grid))?;
        root.draw(&PathElement::new(vec![(x0 - 5, y), (x0, y)], axis))?;
        let label = format_value(l);
        text(
            root,
            &label,
            (x0 - 10 - 8 * label.len() as i32, y - 4),
            1,
            &BLACK,
        )?;
    }
    text(root, "step", ((x0 + x1) / 2 - 16, y1 + 30), 1, &BLACK)?;
    text(root, "loss", (8, y0 - 16), 1, &BLACK)?;
    let raw = RGBColor(160, 190, 235);
    let line: Vec<(i32, i32)> = pts.iter().map(|&(s, l)| (px(s), py(l))).collect();
    root.draw(&PathElement::new(
        line,
        ShapeStyle::from(&raw).stroke_width(1),
    ))?;
    let alpha = (2.0 / (pts.len() as f64 / 20.0 + 1.0)).clamp(0.02, 1.0);
    let mut ema = pts[0].1;
    let smooth: Vec<(i32, i32)> = pts
        .iter()
        .map(|&(s, l)| {
            ema = alpha * l + (1.0 - alpha) * ema;
            (px(s), py(ema))
        })
        .collect();
    let dark = RGBColor(20, 60, 160);
    root.draw(&PathElement::new(
        smooth,
        ShapeStyle::from(&dark).stroke_width(2),
    ))?;
    let last = pts[pts.len() - 1];
    let summary = format!("last step {}  loss {}", last.0 as u64, format_value(last.1));
    text(
        root,
        &summary,
        (x1 - 8 * summary.len() as i32, 22),
        1,
        &dark,
    )?;
    Ok(())
}

fn format_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// Draws ASCII `s` with its top-left corner at `at`, each font pixel as a `scale`² square.
fn text<'a>(
    root: &Area<'a>,
    s: &str,
    at: (i32, i32),
    scale: i32,
    color: &RGBColor,
) -> DrawResult<'a> {
    let mut x = at.0;
    for ch in s.chars() {
        let code = ch as usize;
        let glyph = font8x8::legacy::BASIC_LEGACY
            .get(code)
            .copied()
            .unwrap_or(font8x8::legacy::BASIC_LEGACY[b'?' as usize]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            root.draw_pixel(
                                (x + col * scale + dx, at.1 + row as i32 * scale + dy),
                                color,
                            )?;
                        }
                    }
                }
            }
        }
        x += 8 * scale;
    }
    Ok(())
}
