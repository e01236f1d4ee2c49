//! The results chart: grouped bars per server, one panel for server CPU per
//! delivered message and one for resident memory per idle connection, with
//! min–max whiskers over repeats. Plain SVG, no dependencies.

use std::fmt::Write;

use crate::report::{Chart, Row, fmt_num};

const COLORS: &[&str] = &["#3b6fb6", "#e0812f", "#4f9d57", "#b8487d", "#7c6bb0"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v`.
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

#[allow(clippy::too_many_arguments)]
fn panel(
    out: &mut String,
    x0: f64,
    width: f64,
    title: &str,
    rows: &[&Row],
    servers: &[String],
    top: f64,
    height: f64,
) {
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        x0,
        top - 18.0,
        esc(title)
    );
    if rows.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{x0:.1}" y="{:.1}" font-size="12">no data</text>"#,
            top + 20.0
        );
        return;
    }
    let axis_w = 48.0;
    let plot_x = x0 + axis_w;
    let plot_w = width - axis_w;
    let max = rows
        .iter()
        .flat_map(|r| r.cells.values())
        .filter_map(|c| c.max.or(c.median))
        .fold(0.0f64, f64::max);
    let ymax = nice_max(max);
    let y = |v: f64| top + height - (v / ymax).clamp(0.0, 1.0) * height;
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{plot_x:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            plot_x + plot_w,
            plot_x - 6.0,
            yy + 4.0,
            fmt_num(v)
        );
    }
    let group_w = plot_w / rows.len() as f64;
    let bar_w = (group_w * 0.8 / servers.len() as f64).min(60.0);
    for (g, r) in rows.iter().enumerate() {
        let gx = plot_x + group_w * g as f64 + (group_w - bar_w * servers.len() as f64) / 2.0;
        for (k, s) in servers.iter().enumerate() {
            let bx = gx + bar_w * k as f64;
            let color = COLORS[k % COLORS.len()];
            match r.cells.get(s).and_then(|c| c.median.map(|m| (m, c))) {
                Some((m, c)) => {
                    let _ = writeln!(
                        out,
                        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {} {}</title></rect>"#,
                        bx + 1.0,
                        y(m),
                        bar_w - 2.0,
                        top + height - y(m),
                        esc(s),
                        fmt_num(m),
                        esc(&r.unit)
                    );
                    if let (Some(lo), Some(hi)) = (c.min, c.max)
                        && c.n > 1
                        && hi > lo
                    {
                        let cx = bx + bar_w / 2.0;
                        let _ = writeln!(
                            out,
                            r##"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="#222"/>"##,
                            y(lo),
                            y(hi)
                        );
                    }
                    let _ = writeln!(
                        out,
                        r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                        bx + bar_w / 2.0,
                        y(c.max.unwrap_or(m).max(m)) - 4.0,
                        fmt_num(m)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">n/a</text>"#,
                        bx + bar_w / 2.0,
                        top + height - 4.0
                    );
                }
            }
        }
        let label = format!("{} ({})", r.label, r.unit);
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            plot_x + group_w * (g as f64 + 0.5),
            top + height + 16.0,
            esc(&label)
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{plot_x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#444"/>"##,
        top + height,
        plot_x + plot_w,
        top + height
    );
}

/// Renders the chart for `rows` (those with a [`Chart`]), one color per
/// server, with `subtitle` under the title.
pub fn render(rows: &[Row], servers: &[String], subtitle: &str) -> String {
    let cpu: Vec<&Row> = rows
        .iter()
        .filter(|r| r.chart == Some(Chart::Cpu))
        .collect();
    let rss: Vec<&Row> = rows
        .iter()
        .filter(|r| r.chart == Some(Chart::Rss))
        .collect();
    let (w, h) = (1000.0, 400.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="20" y="26" font-size="16" font-weight="bold">Switchboard vs baselines (lower is better)</text>"#
    );
    let _ = writeln!(
        out,
        r##"<text x="20" y="44" font-size="11" fill="#555">{}</text>"##,
        esc(subtitle)
    );
    for (k, s) in servers.iter().enumerate() {
        let lx = 560.0 + 140.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="16" width="12" height="12" fill="{}"/><text x="{}" y="26" font-size="12">{}</text>"#,
            COLORS[k % COLORS.len()],
            lx + 16.0,
            esc(s)
        );
    }
    let top = 90.0;
    let height = h - top - 50.0;
    panel(
        &mut out,
        20.0,
        600.0,
        "Server CPU per delivered message (µs)",
        &cpu,
        servers,
        top,
        height,
    );
    panel(
        &mut out,
        680.0,
        300.0,
        "Server RSS per idle connection (KiB)",
        &rss,
        servers,
        top,
        height,
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Run, build_rows};
    use serde_json::json;

    #[test]
    fn nice_axis() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(1.2), 2.0);
        assert_eq!(nice_max(2.2), 2.5);
        assert_eq!(nice_max(37.0), 50.0);
        assert_eq!(nice_max(100.0), 100.0);
    }

    #[test]
    fn renders_bars_for_each_server() {
        let mk = |server: &str, scenario: &str, v: f64| Run {
            server: server.into(),
            scenario: scenario.into(),
            label: format!("{scenario} <x>"),
            rep: 1,
            exit: 0,
            attempts: 1,
            variant: None,
            result: Some(
                json!({"results": {"rss_kib_per_conn": v, "server_cpu_us_per_delivery": v}}),
            ),
        };
        let servers = vec!["switchboard".to_string(), "node-ws".to_string()];
        let runs = vec![
            mk("switchboard", "idle", 3.0),
            mk("node-ws", "idle", 12.0),
            mk("switchboard", "cpu-1k", 0.5),
        ];
        let rows = build_rows(&runs, "switchboard", &servers);
        let svg = render(&rows, &servers, "test & run");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("test &amp; run"));
        assert!(svg.contains("idle &lt;x&gt; (KiB)"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            3 + 2,
            "3 bars + 2 legend swatches"
        );
        assert!(svg.contains(">n/a<"), "node-ws has no cpu-1k figure");
    }
}
