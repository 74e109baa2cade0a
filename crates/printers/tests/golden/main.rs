//! Golden tests of the printers: each test renders a resource's Table as text and compares it with
//! a file under `tests/golden/expected/`. Run with `UPDATE_EXPECT=1` to rewrite the files, then
//! review the diff like any other change.

mod apps;
mod core;
mod misc;

use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::Value;

/// The clock of every test: objects' ages are measured against it.
pub(crate) fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
}

/// An RFC 3339 timestamp `seconds` before [`now`], as the apiserver stores it.
pub(crate) fn ago(seconds: i64) -> String {
    let when = now()
        .checked_sub(jiff::SignedDuration::from_secs(seconds))
        .expect("in range");
    when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Compares `actual` with the golden file `name`; on mismatch shows a line diff.
pub(crate) fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/expected")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("create golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        return;
    }
    let mut diff = String::new();
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    for i in 0..expected_lines.len().max(actual_lines.len()) {
        match (expected_lines.get(i), actual_lines.get(i)) {
            (Some(e), Some(a)) if e == a => diff.push_str(&format!("  {e}\n")),
            (e, a) => {
                if let Some(e) = e {
                    diff.push_str(&format!("- {e}\n"));
                }
                if let Some(a) = a {
                    diff.push_str(&format!("+ {a}\n"));
                }
            }
        }
    }
    panic!(
        "golden file {} differs (- expected, + actual; UPDATE_EXPECT=1 to accept):\n{diff}",
        path.display()
    );
}

/// A resource's Table as text: one header of upper-cased column names (wide-only ones in
/// brackets) and one line per object whose cells are JSON, so "1" and 1 stay distinct.
pub(crate) fn render(group: &str, resource: &str, objects: &[Value]) -> String {
    let columns = printers::columns(group, resource);
    let header: Vec<String> = columns
        .iter()
        .map(|c| {
            let name = c.name.to_uppercase();
            if c.priority > 0 {
                format!("[{name}]")
            } else {
                name
            }
        })
        .collect();
    let mut lines = vec![header];
    for obj in objects {
        let cells = printers::row(group, resource, obj, now());
        assert_eq!(cells.len(), columns.len(), "one cell per column for {obj}");
        lines.push(cells.iter().map(Value::to_string).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            lines
                .iter()
                .map(|line| line[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let padded: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    }
    out
}
