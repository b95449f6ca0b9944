//! The recall-vs-throughput plot of `bench-glove`, in the style of ann-benchmarks: recall@k on
//! x, queries per second (log scale) on y, one line per library, index kind and tree count (copse's
//! forests, copse's graph index, each compared library), up and to the right is better. Text uses an embedded DejaVu Sans, so no system fonts are needed.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::bench_glove::Row;

const COLORS: [RGBColor; 10] = [
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
];

/// The legend's name of a row's curve.
fn series_name(r: &Row) -> String {
    match (r.library.as_str(), r.kind.as_str()) {
        ("copse", "graph") => format!("copse graph ({} trees + graph, search_k sweep)", r.trees),
        ("copse", "graph-sparse") => "copse graph, 64-bit sparse ids".to_string(),
        ("copse", _) => format!("copse forest ({} trees)", r.trees),
        ("hnswlib", _) => "hnswlib (M=16, efC=200, ef sweep)".to_string(),
        ("faiss", _) => "faiss HNSW32 (efC=200, efSearch sweep)".to_string(),
        ("usearch", _) => "usearch (M=16, efC=200, ef sweep)".to_string(),
        (library, _) => format!("{library} ({} trees)", r.trees),
    }
}

pub fn recall_qps(dir: &Path, dataset: &str, k: usize, rows: &[Row]) -> Result<()> {
    // Registering twice is harmless; failure means the font bytes are bad, which they are not.
    let _ =
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    let png = dir.join("recall-qps.png");
    let svg = dir.join("recall-qps.svg");
    draw(
        &BitMapBackend::new(&png, (1000, 700)).into_drawing_area(),
        dataset,
        k,
        rows,
    )?;
    draw(
        &SVGBackend::new(&svg, (1000, 700)).into_drawing_area(),
        dataset,
        k,
        rows,
    )?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    dataset: &str,
    k: usize,
    rows: &[Row],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("plot: {e:?}");
    area.fill(&WHITE).map_err(err)?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows {
        let name = series_name(r);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push((r.recall_10, r.qps)),
            None => series.push((name, vec![(r.recall_10, r.qps)])),
        }
    }
    for (_, points) in &mut series {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_min, mut y_min, mut y_max) = (1.0f64, f64::MAX, 0.0f64);
    for &(x, y) in all {
        x_min = x_min.min(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if y_max <= 0.0 {
        return Ok(());
    }
    let x_min = (x_min - 0.02).clamp(0.0, 0.98);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{dataset}: recall@{k} vs queries per second (one thread)"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_min..1.0f64, (y_min * 0.8..y_max * 1.25).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!("recall@{k}"))
        .y_desc("queries per second")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| format!("{x:.2}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    area.present().map_err(err)?;
    Ok(())
}
