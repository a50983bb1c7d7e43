//! What every benchmark shares: progress bars on standard error, and the figures it reports.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

/// A progress bar of `total` steps, labelled `label`.
pub fn progress(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{msg:32} [{bar:40}] {pos}/{len} {per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_owned());
    bar
}

/// The figures of one run, by name, in the order they were measured: what `--json` prints.
#[derive(Debug, Default)]
pub struct Figures(Map<String, Value>);

impl Figures {
    /// Records `value` under `name`; a rate or time is rounded to two decimals.
    pub fn set(&mut self, name: &str, value: f64) -> &mut Self {
        let rounded = (value * 100.0).round() / 100.0;
        self.0.insert(name.to_owned(), serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number));
        self
    }

    /// The figures as one line of JSON.
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}
