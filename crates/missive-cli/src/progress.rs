//! A one-line progress display on stderr, drawn only when stderr is a terminal.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

/// A counter towards `total`, shown as `label [#####     ] pos/total unit`. Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    label: String,
    unit: &'static str,
    total: u64,
    position: AtomicU64,
    drawn_at: std::sync::Mutex<Option<Instant>>,
    visible: bool,
}

impl Progress {
    pub(crate) fn new(label: impl Into<String>, total: u64, unit: &'static str) -> Self {
        Progress {
            inner: Arc::new(Inner {
                label: label.into(),
                unit,
                total,
                position: AtomicU64::new(0),
                drawn_at: std::sync::Mutex::new(None),
                visible: std::io::stderr().is_terminal(),
            }),
        }
    }

    pub(crate) fn set_position(&self, position: u64) {
        self.inner.position.store(position, Ordering::Relaxed);
        if !self.inner.visible {
            return;
        }
        let mut drawn = self
            .inner
            .drawn_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if drawn.is_some_and(|at| at.elapsed() < REDRAW) {
            return;
        }
        *drawn = Some(Instant::now());
        eprint!("\r{}", self.line());
        let _ = std::io::stderr().flush();
    }

    /// Erases the line, leaving the terminal as it was.
    pub(crate) fn finish_and_clear(&self) {
        if self.inner.visible {
            eprint!("\r{}\r", " ".repeat(self.line().chars().count()));
            let _ = std::io::stderr().flush();
        }
    }

    fn line(&self) -> String {
        const WIDTH: u64 = 40;
        let Inner {
            label, unit, total, ..
        } = &*self.inner;
        let position = self.inner.position.load(Ordering::Relaxed).min(*total);
        let filled = (position * WIDTH).checked_div(*total).unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { ' ' })
            .collect();
        format!("{label} [{bar}] {position}/{total} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_the_share_done() {
        let p = Progress::new("queue/tcp", 200, "datagrams");
        p.set_position(50);
        let line = p.line();
        assert_eq!(line.matches('#').count(), 10, "{line}");
        assert!(line.ends_with(" 50/200 datagrams"), "{line}");
        p.set_position(500);
        assert!(p.line().ends_with(" 200/200 datagrams"));
        assert_eq!(Progress::new("x", 0, "u").line().matches('#').count(), 40);
    }
}
