//! The A/B report: each variant side by side, with rates and how confident
//! the difference from the control (the first variant) is.
//!
//! Two outcomes are compared, each as a proportion with a two-proportion
//! z-test (normal approximation, two-sided):
//! - **push accepted**: promised pushes the client neither cancelled nor
//!   requested anyway, over promised pushes (clients that accept push);
//! - **hint used**: early-hinted resources the client then requested on the
//!   same connection, over hinted links (browsers).
//!
//! Invariant: pure. It formats counters; it reads nothing itself.

use std::sync::Arc;

use crate::metrics::Metrics;

/// One variant's counters (summed over its versions).
pub struct Row {
    pub variant: String,
    pub versions: String,
    pub metrics: Vec<Arc<Metrics>>,
}

fn sum(row: &Row, pick: crate::metrics::Pick) -> u64 {
    row.metrics.iter().map(|m| m.get(pick)).sum()
}

/// A proportion and its sample size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proportion {
    pub hits: u64,
    pub n: u64,
}

impl Proportion {
    pub fn rate(&self) -> Option<f64> {
        (self.n > 0).then(|| self.hits as f64 / self.n as f64)
    }
}

/// Two-sided p-value of the difference between two proportions (pooled
/// two-proportion z-test); `None` when either sample is empty or there is no
/// variance at all.
pub fn p_value(a: Proportion, b: Proportion) -> Option<f64> {
    let (pa, pb) = (a.rate()?, b.rate()?);
    let pooled = (a.hits + b.hits) as f64 / (a.n + b.n) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / a.n as f64 + 1.0 / b.n as f64)).sqrt();
    if se == 0.0 {
        return None;
    }
    let z = ((pb - pa) / se).abs();
    Some(erfc(z / std::f64::consts::SQRT_2))
}

/// Complementary error function (Abramowitz and Stegun 7.1.26, |error| < 1.5e-7).
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

fn accepted(row: &Row) -> Proportion {
    let promised = sum(row, |m| &m.pushes_promised);
    let lost = sum(row, |m| &m.pushes_cancelled) + sum(row, |m| &m.pushed_requested_anyway);
    Proportion {
        hits: promised.saturating_sub(lost),
        n: promised,
    }
}

fn hint_use(row: &Row) -> Proportion {
    Proportion {
        hits: sum(row, |m| &m.hinted_requested),
        n: sum(row, |m| &m.hinted_links),
    }
}

fn percent(p: Proportion) -> String {
    p.rate()
        .map_or_else(|| "n/a".into(), |r| format!("{:.1}% of {}", r * 100.0, p.n))
}

fn versus(control: Proportion, this: Proportion) -> String {
    match (control.rate(), this.rate(), p_value(control, this)) {
        (Some(c), Some(t), Some(p)) => format!(
            "{:+.1} pts, {:.1}% confident",
            (t - c) * 100.0,
            (1.0 - p) * 100.0
        ),
        _ => "not enough data".into(),
    }
}

/// The report as a Markdown table.
pub fn render(experiment: &str, rows: &[Row]) -> String {
    let mut out = format!("Experiment `{experiment}` (control: the first variant)\n\n");
    out.push_str("| variant | versions | requests | hints/page | pushes/page | push accepted | waste/page | hint used | push accepted vs control | hint used vs control |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let Some(control) = rows.first() else {
        out.push_str("(no variants)\n");
        return out;
    };
    for row in rows {
        let requests = sum(row, |m| &m.requests);
        let per_page = |v: u64| {
            if requests == 0 {
                "n/a".to_string()
            } else {
                format!("{:.2}", v as f64 / requests as f64)
            }
        };
        let waste = if requests == 0 {
            "n/a".to_string()
        } else {
            format!(
                "{:.0} B",
                sum(row, |m| &m.wasted_bytes) as f64 / requests as f64
            )
        };
        let (vs_push, vs_hint) = if std::ptr::eq(row, control) {
            ("(control)".to_string(), "(control)".to_string())
        } else {
            (
                versus(accepted(control), accepted(row)),
                versus(hint_use(control), hint_use(row)),
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.variant,
            row.versions,
            requests,
            per_page(sum(row, |m| &m.hints)),
            per_page(sum(row, |m| &m.pushes_promised)),
            percent(accepted(row)),
            waste,
            percent(hint_use(row)),
            vs_push,
            vs_hint,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_value_matches_known_values() {
        // 50% vs 60% with 1000 each: z = 4.49, p ~ 7e-6.
        let p = p_value(
            Proportion { hits: 500, n: 1000 },
            Proportion { hits: 600, n: 1000 },
        )
        .unwrap();
        assert!((5e-6..1e-5).contains(&p), "{p}");
        // Identical rates: no evidence of a difference.
        let p = p_value(
            Proportion { hits: 50, n: 100 },
            Proportion { hits: 500, n: 1000 },
        )
        .unwrap();
        assert!((p - 1.0).abs() < 1e-6, "{p}");
        assert_eq!(
            p_value(Proportion { hits: 0, n: 0 }, Proportion { hits: 1, n: 2 }),
            None
        );
    }

    #[test]
    fn report_lists_every_variant_with_rates() {
        let row = |name: &str, promised: u64, cancelled: u64| {
            let m = Arc::new(Metrics::default());
            m.add(|c| &c.requests, 100);
            m.add(|c| &c.pushes_promised, promised);
            m.add(|c| &c.pushes_cancelled, cancelled);
            Row {
                variant: name.into(),
                versions: "p@1".into(),
                metrics: vec![m],
            }
        };
        let text = render("x", &[row("control", 1000, 500), row("bold", 1000, 400)]);
        assert!(
            text.contains("| control | p@1 | 100 | 0.00 | 10.00 | 50.0% of 1000 |"),
            "{text}"
        );
        assert!(text.contains("+10.0 pts, 100.0% confident"), "{text}");
    }
}
