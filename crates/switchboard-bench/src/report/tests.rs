use super::*;

fn run(server: &str, scenario: &str, rep: u32, results: Value) -> Run {
    Run {
        server: server.into(),
        scenario: scenario.into(),
        label: format!("{scenario} label"),
        rep,
        exit: 0,
        attempts: 1,
        variant: None,
        result: Some(
            json!({"scenario": "x", "params": {"url": "ws://127.0.0.1:1/"}, "results": results}),
        ),
    }
}

fn servers() -> Vec<String> {
    vec!["switchboard".into(), "node-ws".into(), "axum-ws".into()]
}

#[test]
fn medians_spreads_and_ratios() {
    let runs = vec![
        run(
            "switchboard",
            "idle",
            1,
            json!({"rss_kib_per_conn": 4.0, "tool_cpu_pct": null}),
        ),
        run("switchboard", "idle", 2, json!({"rss_kib_per_conn": 6.0})),
        run("node-ws", "idle", 1, json!({"rss_kib_per_conn": 20.0})),
        run("node-ws", "idle", 2, json!({"rss_kib_per_conn": 20.0})),
        run("axum-ws", "idle", 1, json!({"rss_kib_per_conn": 10.0})),
        Run {
            exit: 1,
            result: None,
            ..run("axum-ws", "idle", 2, json!({}))
        },
    ];
    let rows = build_rows(&runs, "switchboard", &servers());
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.cells["switchboard"].median, Some(5.0));
    assert_eq!(r.cells["switchboard"].min, Some(4.0));
    assert_eq!(r.cells["switchboard"].max, Some(6.0));
    assert_eq!(r.ratios["node-ws"], Some(0.25));
    assert_eq!(r.ratios["axum-ws"], Some(0.5));
    assert_eq!(r.cells["axum-ws"].errors, 1);
    let t = markdown_table(&rows, "switchboard", &servers());
    assert!(t.contains("| idle label | server RSS per connection, KiB (lower is better) | 5.00 (4.00–6.00) | 20.0 | 10.0 [1 failed] | 0.250× | 0.500× | – | – |"), "{t}");
    let doc = results_json(
        &rows,
        &runs,
        "switchboard",
        &servers(),
        json!({"date": "d"}),
    );
    assert!(doc["runs"][0].get("params").is_none());
    assert!(doc["params"]["idle"]["switchboard"].is_object());
    assert!(doc["params"]["idle"]["switchboard"].get("url").is_none());
    assert_eq!(doc["table"][0]["ratios"]["node-ws"], 0.25);
}

#[test]
fn nulls_zero_baselines_and_tool_cpu() {
    let runs = vec![
        run(
            "switchboard",
            "max-rate",
            1,
            json!({"max_passing_rate": 25.0, "tool_cpu_pct": 40.0}),
        ),
        run(
            "node-ws",
            "max-rate",
            1,
            json!({"max_passing_rate": null, "tool_cpu_pct": 55.5}),
        ),
        run("switchboard", "overload", 1, json!({"loss_pct": 1.5})),
        run("node-ws", "overload", 1, json!({"loss_pct": 0.0})),
    ];
    let rows = build_rows(&runs, "switchboard", &servers());
    let rate = rows.iter().find(|r| r.scenario == "max-rate").unwrap();
    assert_eq!(rate.cells["node-ws"].median, Some(0.0));
    assert_eq!(rate.ratios["node-ws"], None);
    assert_eq!(rate.ratios["axum-ws"], None);
    assert_eq!(rate.tool_cpu_pct_max, Some(55.5));
    let loss = rows
        .iter()
        .find(|r| r.scenario == "overload" && r.metric == "loss")
        .unwrap();
    assert_eq!(loss.ratios["node-ws"], None);
    // Missing metrics in a successful run count as failures.
    let p99 = rows
        .iter()
        .find(|r| r.scenario == "overload" && r.metric == "p99 latency")
        .unwrap();
    assert_eq!(p99.cells["switchboard"].errors, 1);
    assert_eq!(fmt_cell(p99.cells.get("switchboard")), "error");
}

#[test]
fn number_formats() {
    assert_eq!(fmt_num(1234.5), "1234");
    assert_eq!(fmt_num(12.34), "12.3");
    assert_eq!(fmt_num(1.234), "1.23");
    assert_eq!(fmt_num(0.1234), "0.123");
    assert_eq!(fmt_num(0.001234), "0.0012");
    assert_eq!(fmt_num(0.0), "0");
    assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
    assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    assert_eq!(ratio(None, Some(1.0)), None);
}

#[test]
fn parses_run_lines() {
    let text = "{\"server\":\"a\",\"scenario\":\"idle\",\"rep\":1,\"exit\":0,\"result\":null}\n\n";
    let runs = parse_runs(text).unwrap();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].result.is_none());
    assert!(parse_runs("{").is_err());
}

#[test]
fn paired_rows_compare_the_subject_with_and_without() {
    let mut runs = Vec::new();
    for (variant, cpu, rate) in [("without", 10.0, 5000.0), ("with", 25.0, 2000.0)] {
        for rep in 1..=2 {
            let mut r = run(
                "switchboard",
                "hooks-publish",
                rep,
                json!({"server_cpu_us_per_msg": cpu + f64::from(rep), "acked_per_s": rate,
                       "other_cpu_pct": 3.0}),
            );
            r.variant = Some(variant.into());
            runs.push(r);
        }
    }
    let servers = vec!["switchboard".to_string()];
    let rows = build_rows(&runs, "switchboard", &servers);
    let cpu = rows
        .iter()
        .find(|r| r.metric == "server CPU per publish")
        .expect("cpu row");
    assert!(cpu.paired);
    assert_eq!(cpu.cells["without"].median, Some(11.5));
    assert_eq!(cpu.cells["with"].median, Some(26.5));
    assert_eq!(cpu.ratios[PAIRED_RATIO], Some(26.5 / 11.5));
    let t = markdown_table(&rows, "switchboard", &servers);
    assert!(
        t.contains("| switchboard without hooks | switchboard with hooks | with/without |"),
        "{t}"
    );
    assert!(
        t.contains("| hooks-publish label | publishes acknowledged, /s (higher is better) | 5000 | 2000 | 0.400× | – | 3 |"),
        "{t}"
    );
    // No server-by-server table when only paired rows exist.
    assert!(!t.contains("| switchboard | "), "{t}");
    let doc = results_json(&rows, &runs, "switchboard", &servers, json!({}));
    assert_eq!(doc["runs"][2]["variant"], "with");
    assert!(doc["params"]["hooks-publish"]["switchboard/with"].is_object());
    // A run line without a variant still parses.
    let parsed = parse_runs(r#"{"server":"s","scenario":"idle","result":null}"#).unwrap();
    assert_eq!(parsed[0].variant, None);
}
