//! The chart of a run: latency percentiles per second above, throughput per second below.
//!
//! Drawn with plotters' SVG backend alone. Its text is written as `<text>` elements for the
//! viewer to render, and laid out with plotters' built-in size estimate, so no system font and
//! no font-rasterising crate is needed.

use plotters::prelude::*;

use crate::{Error, Report};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 680;

/// The latency series: name, colour, how to read it from a second.
type Series = (&'static str, RGBColor, fn(&crate::SecondReport) -> f64);

const LATENCY: [Series; 5] = [
    ("p50", RGBColor(31, 119, 180), |s| s.latency.p50_ms),
    ("p90", RGBColor(44, 160, 44), |s| s.latency.p90_ms),
    ("p99", RGBColor(255, 127, 14), |s| s.latency.p99_ms),
    ("p99.9", RGBColor(214, 39, 40), |s| s.latency.p999_ms),
    ("max", RGBColor(127, 127, 127), |s| s.latency.max_ms),
];

/// Every measured second is also a dot: a run of one or two seconds has no line to draw.
const POINT: u32 = 2;

const THROUGHPUT: RGBColor = RGBColor(31, 119, 180);
const TARGET: RGBColor = RGBColor(127, 127, 127);
const FAILED: RGBColor = RGBColor(214, 39, 40);

fn chart_error(error: impl std::fmt::Display) -> Error {
    Error::Chart(error.to_string())
}

/// Draws the report's timeline as an SVG document.
pub(crate) fn render(report: &Report) -> Result<String, Error> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let title = format!(
            "{} loop, {} connections: {:.0} requests/s, p99 {:.3} ms",
            report.mode, report.connections, report.throughput, report.latency.p99_ms
        );
        let root = root
            .titled(&title, ("sans-serif", 18))
            .map_err(chart_error)?;
        let (upper, lower) = root.split_vertically(HEIGHT / 2 - 10);

        let timeline = &report.timeline;
        let seconds = timeline
            .last()
            .map_or(1.0, |last| (last.start_s + last.length_s).max(1.0));
        let xs = |second: &crate::SecondReport| second.start_s + second.length_s / 2.0;

        let highest = timeline
            .iter()
            .map(|s| s.latency.max_ms)
            .fold(0.0, f64::max);
        let mut latency = ChartBuilder::on(&upper)
            .caption("latency from due time, ms", ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..seconds, 0.0..(highest * 1.1).max(0.001))
            .map_err(chart_error)?;
        latency
            .configure_mesh()
            .x_desc("seconds of load")
            .y_desc("ms")
            .draw()
            .map_err(chart_error)?;
        for (name, colour, read) in LATENCY {
            latency
                .draw_series(
                    LineSeries::new(
                        timeline.iter().map(|s| (xs(s), read(s))),
                        colour.stroke_width(2),
                    )
                    .point_size(POINT),
                )
                .map_err(chart_error)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        latency
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(chart_error)?;

        // A phase's last second may be a sliver: its rate over a few milliseconds says
        // nothing, so seconds less than a quarter run are left out of the rate lines.
        let rated = || timeline.iter().filter(|s| s.length_s >= 0.25);
        let per_second = |count: u64, s: &crate::SecondReport| count as f64 / s.length_s;
        let busiest = rated()
            .map(|s| per_second(s.completed, s).max(s.target_rate.unwrap_or(0.0)))
            .fold(0.0, f64::max);
        let mut throughput = ChartBuilder::on(&lower)
            .caption(
                format!("requests per second; mix {}", report.mix),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..seconds, 0.0..(busiest * 1.1).max(1.0))
            .map_err(chart_error)?;
        throughput
            .configure_mesh()
            .x_desc("seconds of load")
            .y_desc("requests/s")
            .draw()
            .map_err(chart_error)?;
        throughput
            .draw_series(
                LineSeries::new(
                    rated().map(|s| (xs(s), per_second(s.completed, s))),
                    THROUGHPUT.stroke_width(2),
                )
                .point_size(POINT),
            )
            .map_err(chart_error)?
            .label("answered")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], THROUGHPUT.stroke_width(2))
            });
        if timeline.iter().any(|s| s.target_rate.is_some()) {
            throughput
                .draw_series(LineSeries::new(
                    timeline
                        .iter()
                        .filter_map(|s| s.target_rate.map(|rate| (xs(s), rate))),
                    TARGET.stroke_width(1),
                ))
                .map_err(chart_error)?
                .label("target")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], TARGET));
        }
        throughput
            .draw_series(
                LineSeries::new(
                    rated().map(|s| (xs(s), per_second(s.mismatched + s.errors, s))),
                    FAILED.stroke_width(1),
                )
                .point_size(POINT),
            )
            .map_err(chart_error)?
            .label("wrong or failed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], FAILED));
        throughput
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use crate::report::tests::sample;

    #[test]
    fn the_chart_is_an_svg_document_with_every_series() {
        let report = sample();
        let svg = report.to_svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for label in [
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "answered",
            "target",
            "wrong or failed",
            "latency from due time",
            "requests per second",
        ] {
            assert!(
                svg.contains(&format!(">{label}<")) || svg.contains(label),
                "{label}"
            );
        }
        // Five latency lines, answered, target and failed, each a polyline over the timeline.
        assert!(svg.matches("<polyline").count() >= 8, "{svg}");
        // A dot for each second of each measured series: 5 latency + answered + failed.
        assert!(svg.matches("<circle").count() >= 7 * 4, "{svg}");
        // Every opened element is closed or self-closing: well-formed enough for a viewer.
        let opened = svg.matches('<').count();
        let closed = svg.matches("/>").count() + svg.matches("</").count() * 2;
        assert_eq!(opened, closed, "unbalanced tags");
    }

    #[test]
    fn an_empty_timeline_still_draws() {
        let mut report = sample();
        report.timeline.clear();
        let svg = report.to_svg().unwrap();
        assert!(svg.contains("</svg>"));
    }
}
