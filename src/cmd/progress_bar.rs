//! The terminal implementation of the library's progress trait (indicatif, stderr only).

use super::Context;
use crate::progress::{NoProgress, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-counting progress bar with throughput.
pub struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A progress sink for `ctx`: a bar on a terminal, nothing otherwise.
pub fn for_context(ctx: &Context, label: &str, total: Option<u64>) -> Box<dyn Progress + Send> {
    if !ctx.show_progress {
        return Box::new(NoProgress);
    }
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
    } else {
        "{msg} {bytes} {binary_bytes_per_sec}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    Box::new(Bar(bar))
}
