//! Progress of a sync for the person waiting: bars with counts, rate and
//! time left on a terminal; a plain line every tenth of the way when the
//! output goes to a file or a pipe; nothing under `--json`.

use crate::out::Out;
use aftercase_client::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// The four transfers of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    SendCases,
    ReceiveCases,
    SendEvidence,
    ReceiveEvidence,
}

impl Leg {
    const ALL: [Leg; 4] = [
        Leg::SendCases,
        Leg::ReceiveCases,
        Leg::SendEvidence,
        Leg::ReceiveEvidence,
    ];

    fn name(self, out: Out) -> &'static str {
        match self {
            Leg::SendCases => out.t("发送案件", "sending cases"),
            Leg::ReceiveCases => out.t("接收案件", "receiving cases"),
            Leg::SendEvidence => out.t("发送证据", "sending evidence"),
            Leg::ReceiveEvidence => out.t("接收证据", "receiving evidence"),
        }
    }

    /// (done, total) of this leg in `p`.
    fn counts(self, p: &Progress) -> (u64, u64) {
        let e = &p.evidence;
        let (done, total) = match self {
            Leg::SendCases => (p.sent, p.to_send),
            Leg::ReceiveCases => (p.received, p.total),
            Leg::SendEvidence => (e.uploaded + e.failed, e.upload_total),
            Leg::ReceiveEvidence => (e.downloaded, e.download_total),
        };
        (done as u64, total as u64)
    }

    /// Bytes moved so far, for the evidence legs.
    fn bytes(self, p: &Progress) -> Option<u64> {
        match self {
            Leg::SendEvidence => Some(p.evidence.bytes_sent),
            Leg::ReceiveEvidence => Some(p.evidence.bytes_received),
            _ => None,
        }
    }
}

enum Shown {
    Bars {
        multi: MultiProgress,
        bars: [Option<ProgressBar>; 4],
    },
    /// The last tenth printed per leg.
    Lines([Option<u64>; 4]),
    Quiet,
}

/// What a sync shows while it runs.
pub struct Bars {
    out: Out,
    shown: Shown,
}

impl Bars {
    /// Bars on a terminal, plain lines otherwise, nothing for JSON.
    pub fn new(out: Out) -> Bars {
        let shown = if out.json {
            Shown::Quiet
        } else if std::io::stderr().is_terminal() {
            Shown::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: [None, None, None, None],
            }
        } else {
            Shown::Lines([None; 4])
        };
        Bars { out, shown }
    }

    /// Shows `p`.
    pub fn update(&mut self, p: &Progress) {
        let out = self.out;
        match &mut self.shown {
            Shown::Quiet => {}
            Shown::Lines(last) => {
                for (i, leg) in Leg::ALL.into_iter().enumerate() {
                    let (done, total) = leg.counts(p);
                    if total == 0 {
                        continue;
                    }
                    let tenth = done * 10 / total;
                    if last[i] == Some(tenth) {
                        continue;
                    }
                    last[i] = Some(tenth);
                    let bytes = leg
                        .bytes(p)
                        .map(|b| format!(", {}", crate::out_mb(b)))
                        .unwrap_or_default();
                    eprintln!(
                        "{}: {done}/{total} ({}%{bytes})",
                        leg.name(out),
                        done * 100 / total
                    );
                }
            }
            Shown::Bars { multi, bars } => {
                for (i, leg) in Leg::ALL.into_iter().enumerate() {
                    let (done, total) = leg.counts(p);
                    if total == 0 {
                        continue;
                    }
                    let bar = bars[i].get_or_insert_with(|| {
                        let b = multi.add(ProgressBar::new(total));
                        b.set_style(style());
                        b.set_prefix(leg.name(out));
                        b
                    });
                    bar.set_length(total);
                    bar.set_position(done);
                    if let Some(bytes) = leg.bytes(p) {
                        bar.set_message(crate::out_mb(bytes));
                    }
                }
            }
        }
    }

    /// Takes the bars off the screen: the summary the command prints next
    /// says what was done.
    pub fn finish(&mut self) {
        if let Shown::Bars { bars, .. } = &mut self.shown {
            for b in bars.iter_mut().filter_map(Option::take) {
                b.finish_and_clear();
            }
        }
    }
}

/// A bar: what, how far, how fast, how long still.
const TEMPLATE: &str = "{prefix} [{bar:30}] {pos}/{len} {rate} {msg} ETA {eta}";

fn style() -> ProgressStyle {
    // The template is a constant: it parses, or the test below fails.
    ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        // Whole items a second: `{per_sec}` prints four decimals.
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", s.per_sec());
            },
        )
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_template_parses() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }
}
